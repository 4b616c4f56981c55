"""`eggroll-ndcg search RUN_OR_MODEL --dataset NAME "a query"`: full-corpus search through the served index.

RUN_OR_MODEL is a run folder written by `train` (its head, encoder and ``quantize`` codes: binary through
FAISS IndexBinaryFlat, int8 / binary_asym / float exactly), a folder written by `export` (its
quantization.json, if any, gives the codes), or an encoder name such as ``minilm`` (zero-shot, float unless
``--quantize``). It prints the top documents with their scores (ties: doc id descending), or with
``--queries FILE --run-out FILE`` writes a TREC run (FILE: one query a line, ``qid<TAB>text`` or just text,
numbered from 1).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..train.config import ConfigError
from .errors import guarded


def _read_queries(path: str) -> list[tuple[str, str]]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"--queries {path}: cannot read: {error}") from None
    queries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        qid, sep, text = line.partition("\t")
        queries.append((qid.strip(), text.strip()) if sep else (str(number), line.strip()))
    if not queries:
        raise ConfigError(f"--queries {path}: no query in the file")
    return queries


def _model(args):
    """(head or None, encoder name, encoded collection, quantize kind, normalize)."""
    from ..data.sources import resolve
    from ..train.prepare import encode_collection
    from .export_cmd import QUANTIZATION_FILE, load_run_head

    from ..encoders.registry import is_known_encoder

    target = Path(args.model)
    if not target.is_dir() and not is_known_encoder(args.model):
        raise ConfigError(f"search: {args.model}: not a run folder, an exported model folder or an encoder name")
    if (target / "config.json").is_file() and (target / "best_head.safetensors").is_file():
        trained, head, encoded = load_run_head(target, device=args.device or "cpu", progress=not args.quiet)
        if args.dataset and args.dataset != trained.config.task:
            encoded = encode_collection(resolve(args.dataset, data_dir=args.data_dir), trained.config.encoder,
                                        device=args.device or "cpu", progress=not args.quiet)
        kind = args.quantize or trained.config.quantize
        return head, trained.config.encoder, encoded, kind, trained.config.normalize
    if not args.dataset:
        raise ConfigError("search: --dataset is needed with a model folder or an encoder name")
    kind, normalize = args.quantize or "none", True
    settings_file = target / QUANTIZATION_FILE
    if settings_file.is_file():
        settings = json.loads(settings_file.read_text(encoding="utf-8"))
        kind, normalize = args.quantize or settings["quantize"], bool(settings.get("normalize", True))
    encoded = encode_collection(resolve(args.dataset, data_dir=args.data_dir), args.model,
                                device=args.device or "cpu", progress=not args.quiet)
    return None, args.model, encoded, kind, normalize


def _search(args: argparse.Namespace) -> int:
    from ..atomic import write_atomic
    from ..data.retrieval import to_run
    from ..encoders import load_encoder
    from ..metrics.trec import write_run
    from ..quant.outputs import make_codec
    from ..quant.serving import quantized_retrieve
    from .train_cmd import preflight

    if not args.query and not args.queries:
        raise ConfigError("search: give a query text or --queries FILE")
    if args.run_out and not args.queries and not args.query:
        raise ConfigError("search: --run-out needs queries")
    preflight(device=args.device, output_file=args.run_out)
    queries = _read_queries(args.queries) if args.queries else [(str(i), q) for i, q in enumerate(args.query, 1)]
    head, encoder_name, encoded, kind, normalize = _model(args)
    encoder = load_encoder(encoder_name, device=args.device or "cpu")
    q_emb = torch.from_numpy(encoder.encode([t for _, t in queries], kind="query", progress=False)).to(encoded.doc_emb)
    with torch.no_grad():
        q_out = q_emb if head is None else head(q_emb)
        d_out = encoded.doc_emb if head is None else head(encoded.doc_emb)
    codec = make_codec(kind, d_out if kind == "int8" else None, normalize=normalize)
    if kind == "none":
        from ..data.retrieval import retrieve
        scores, indices = retrieve(codec.query_codes(q_out), codec.doc_codes(d_out), args.top,
                                   doc_ids=encoded.collection.doc_ids)
    else:
        scores, indices = quantized_retrieve(codec, q_out.float(), d_out.float(), args.top,
                                             doc_ids=encoded.collection.doc_ids, ignore_identical_ids=False)
    run = to_run([qid for qid, _ in queries], list(encoded.collection.doc_ids), scores, indices)
    if args.run_out:
        Path(args.run_out).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.run_out, lambda tmp: write_run(run, tmp, tag=Path(args.model).name or "search"))
        print(f"wrote {len(run)} queries x {args.top} documents to {args.run_out} ({kind} codes)")
        return 0
    texts = dict(zip(encoded.collection.doc_ids, encoded.collection.doc_texts))
    for qid, text in queries:
        print(f"query {qid}: {text}  ({kind} codes)")
        for rank, (doc_id, score) in enumerate(run[qid].items(), start=1):
            shown = f"{score:.0f}" if codec.integer_scores else f"{score:.4f}"
            print(f"{rank:3d}  {shown:>8}  {doc_id}  {texts[doc_id][:100].replace(chr(10), ' ')}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search", help="search a collection with a trained run, an exported model or an encoder",
        description="Full-corpus search through the served index (binary: FAISS IndexBinaryFlat; int8: exact "
        "int32 scores). Prints the top documents with scores, or writes a TREC run with --queries/--run-out.")
    parser.add_argument("model", metavar="RUN_OR_MODEL",
                        help="a run folder, a folder written by `export`, or an encoder name such as minilm")
    parser.add_argument("query", nargs="*", help="query text(s)")
    parser.add_argument("--dataset", "--task", dest="dataset", help="collection (default with a run: the run's)")
    parser.add_argument("--data-dir", help="folder of BEIR collections (default: $EGGROLL_NDCG_DATA)")
    parser.add_argument("--queries", help="a file of queries, one a line: qid<TAB>text or text")
    parser.add_argument("--run-out", help="write a TREC run here instead of printing")
    parser.add_argument("--top", type=int, default=10, help="documents per query (default 10)")
    parser.add_argument("--quantize", choices=("none", "binary", "binary_asym", "int8"),
                        help="override the codes (default: the run's or the export's)")
    parser.add_argument("--device", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=guarded(_search), trailing_positionals="query")
