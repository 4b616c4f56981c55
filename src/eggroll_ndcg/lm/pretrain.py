"""Pre-train the offline base model: a byte-level BPE (`tokenizers`) and a tiny Llama (`transformers`
LlamaForCausalLM, untied embeddings) on the source of the TRAIN-split stdlib packages (lm/corpus.py).

Data: each file -> ids + [eos], concatenated in sorted file order into one stream [T]; the stream is cut into
non-overlapping windows of `seq_len + 1` tokens [W, seq_len + 1]; each epoch visits the windows in a
permutation drawn from a seeded generator. Loss: next-token cross entropy (mean over the batch's
B·seq_len positions). Optimizer: AdamW (β = 0.9, 0.95), linear warm-up over `warmup_steps`, then cosine decay
to `min_lr_ratio`·lr; gradient norm clipped at 1.

Cache: `<cache root>/lm-base/py<version>-<sha256(format, options)[:16]>/`: a normal `save_pretrained` folder
(config.json, model.safetensors, generation_config.json) + the tokenizer files + `manifest.json` (sealed JSON,
atomic.py) that holds the options, parameter count, loss curve, seconds and the sha256 of every other file.
The folder is built under a temporary sibling name and renamed into place, so a reader sees a whole model or
none; a folder whose manifest or files fail the check is rebuilt (with a warning). Same options (seed
included) and the same thread count -> the same weights, bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .. import atomic
from ..data.sources import OfflineError, hub_unreachable
from ..data.stdlib_code import cache_dir
from ..data.textfiles import DataError
from .corpus import pretraining_text

__all__ = ["PretrainOptions", "pretrain", "base_model_dir", "load_model", "train_tokenizer", "token_windows",
           "build_model", "read_manifest", "FORMAT", "SPECIAL_TOKENS"]

FORMAT = "eggroll-ndcg-lm-base-v1"
MANIFEST = "manifest.json"
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>")  # ids 0, 1, 2
PRETRAIN_HINT = "run `eggroll-ndcg lm pretrain` (offline base model) or pass a local model folder"


@dataclass(frozen=True)
class PretrainOptions:
    """Tokenizer, model and training settings; every field enters the cache key.

    Defaults: 1.8 M parameters (embedding and unembedding 4096 × 128 each, 4 layers of width 128), 300
    steps of 32 × 128 tokens (1.2 M tokens, about 0.6 epoch of the 2 M-token text); the measured run is in
    docs/language_model.md (487 s on 2 CPU cores).
    """

    vocab_size: int = 4096
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate_size: int = 384
    seq_len: int = 128
    batch_size: int = 32
    steps: int = 300
    lr: float = 5e-3
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    max_chars: int | None = None  # use only the first max_chars characters of the text (tests, smoke runs)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "layers", "heads", "kv_heads", "intermediate_size", "seq_len",
                     "batch_size", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"PretrainOptions.{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.heads or self.heads % self.kv_heads:
            raise ValueError("PretrainOptions: hidden_size must divide by heads and heads by kv_heads")
        if self.vocab_size < 256 + len(SPECIAL_TOKENS):
            raise ValueError(f"PretrainOptions.vocab_size must be >= {256 + len(SPECIAL_TOKENS)} (byte alphabet)")


def _options_key(options: PretrainOptions) -> str:
    payload = json.dumps({"format": FORMAT, "options": asdict(options)}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def base_model_dir(options: PretrainOptions = PretrainOptions(), cache_root: str | Path | None = None) -> Path:
    """The cache folder of the base model for `options` and the running Python (whose stdlib is the text)."""
    version = ".".join(map(str, sys.version_info[:3]))
    return Path(cache_root or cache_dir()) / "lm-base" / f"py{version}-{_options_key(options)}"


# ------------------------------------------------------------------------------------------ pieces


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE of `vocab_size` tokens (<pad>=0, <s>=1, </s>=2) as a `transformers` fast tokenizer
    with pad token and left padding."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    pad, bos, eos = SPECIAL_TOKENS
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=pad, bos_token=bos, eos_token=eos,
                                   padding_side="left", clean_up_tokenization_spaces=False)


def token_windows(texts: list[str], tokenizer, seq_len: int) -> torch.Tensor:
    """The text as non-overlapping windows of seq_len + 1 token ids: int64 [W, seq_len + 1] (each file's ids
    followed by eos, concatenated in order; the tail shorter than a window is dropped)."""
    stream: list[int] = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        stream += ids
        stream.append(tokenizer.eos_token_id)
    width = seq_len + 1
    count = len(stream) // width
    if count == 0:
        raise DataError(f"pretraining text has {len(stream)} tokens, fewer than one window of {width}")
    return torch.tensor(stream[: count * width], dtype=torch.long).view(count, width)


def build_model(options: PretrainOptions, tokenizer):
    """A freshly initialized LlamaForCausalLM for `options` (seeded by options.seed), float32."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=options.hidden_size, intermediate_size=options.intermediate_size,
        num_hidden_layers=options.layers, num_attention_heads=options.heads,
        num_key_value_heads=options.kv_heads, max_position_embeddings=max(1024, options.seq_len),
        tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(options.seed)
    return LlamaForCausalLM(config)


def _first_chars(texts: list[str], budget: int) -> list[str]:
    """The texts in order, cut so that together they hold at most `budget` characters."""
    kept = []
    for text in texts:
        if budget <= 0:
            break
        kept.append(text[:budget])
        budget -= len(kept[-1])
    return kept


def _learning_rate(step: int, options: PretrainOptions) -> float:
    """lr at `step` (0-based): linear warm-up, then cosine from lr down to min_lr_ratio·lr at the last step."""
    if step < options.warmup_steps:
        return options.lr * (step + 1) / options.warmup_steps
    span = max(1, options.steps - options.warmup_steps)
    progress = min(1.0, (step - options.warmup_steps) / span)
    floor = options.min_lr_ratio
    return options.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def _train(model, windows: torch.Tensor, options: PretrainOptions, *, progress: bool, device) -> list[float]:
    """Train in place; returns the loss of every step."""
    from tqdm.auto import tqdm

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": options.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=options.lr, betas=(0.9, 0.95))
    generator = torch.Generator().manual_seed(options.seed)
    order = torch.randperm(len(windows), generator=generator)
    cursor = 0
    losses: list[float] = []
    model.train()
    bar = tqdm(range(options.steps), desc="lm pretrain", disable=not progress, unit="step")
    for step in bar:
        if cursor + options.batch_size > len(order):  # a new epoch: a fresh permutation
            order, cursor = torch.randperm(len(windows), generator=generator), 0
        batch = windows[order[cursor:cursor + options.batch_size]].to(device)
        cursor += options.batch_size
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step, options)
        logits = model(input_ids=batch[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                                 batch[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    model.eval()
    return losses


# ------------------------------------------------------------------------------------------ cache


def read_manifest(folder: str | Path) -> dict:
    """The sealed manifest of a cached base model, after checking the seal and every listed file's sha256.
    Raises ValueError naming what is wrong."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ValueError(f"{path}: missing")
    try:
        manifest, _ = atomic.parse_sealed_json(path.read_bytes())
    except atomic.SealError as error:
        raise ValueError(f"{path}: {error}") from None
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    for name, digest in (manifest.get("files") or {}).items():
        file = folder / name
        if not file.is_file() or atomic.sha256_file(file) != digest:
            raise ValueError(f"{file}: missing or changed since it was written")
    return manifest


def pretrain(options: PretrainOptions = PretrainOptions(), *, cache_root: str | Path | None = None,
             rebuild: bool = False, progress: bool = True, device: str | torch.device = "cpu",
             texts: list[str] | None = None) -> Path:
    """The cached base-model folder for `options`, trained first if missing, invalid or `rebuild`.

    `texts` replaces the pretraining text (tests only; it must be train-split text). Returns the folder,
    loadable with `load_model` or `from_pretrained`.
    """
    target = base_model_dir(options, cache_root)
    if target.exists() and not rebuild:
        try:
            read_manifest(target)
            return target
        except ValueError as error:
            warnings.warn(f"cached base model {target} is invalid ({error}); rebuilding it", stacklevel=2)
    start = time.perf_counter()
    texts = pretraining_text() if texts is None else list(texts)
    if options.max_chars is not None:
        texts = _first_chars(texts, options.max_chars)
    text_hash = hashlib.sha256("\0".join(texts).encode("utf-8")).hexdigest()
    tokenizer = train_tokenizer(texts, options.vocab_size)
    windows = token_windows(texts, tokenizer, options.seq_len)
    model = build_model(options, tokenizer).to(device)
    losses = _train(model, windows, options, progress=progress, device=device)
    seconds = time.perf_counter() - start

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        model.to("cpu").save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        files = {path.name: atomic.sha256_file(path) for path in sorted(staging.iterdir()) if path.is_file()}
        manifest = {
            "format": FORMAT, "options": asdict(options), "python": sys.version.split()[0],
            "parameters": sum(p.numel() for p in model.parameters()), "text_sha256": text_hash,
            "text_files": len(texts), "text_chars": sum(map(len, texts)), "windows": len(windows),
            "tokens_seen": options.steps * options.batch_size * options.seq_len,
            "loss_curve": [round(x, 5) for x in losses], "final_loss": round(sum(losses[-10:]) / len(losses[-10:]), 5),
            "seconds": round(seconds, 2), "threads": torch.get_num_threads(), "device": str(device), "files": files,
        }
        atomic.write_bytes_atomic(staging / MANIFEST, atomic.sealed_json_bytes(manifest))
        if target.exists():
            shutil.rmtree(target)
        atomic.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# ------------------------------------------------------------------------------------------ loading


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _from_pretrained(source: str, dtype: torch.dtype, *, local_files_only: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, local_files_only=local_files_only)
    return tokenizer, model


def _check_hub_reachable(name: str) -> None:
    """Fail fast (one probe, a few seconds, no retries) when a hub model is not cached and the hub is
    unreachable or switched off."""
    reason = hub_unreachable("models", name)
    if reason is not None:
        raise OfflineError(f"model {name!r} is not in the local hub cache and {reason}; {PRETRAIN_HINT}")


def load_model(name_or_path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """(model, tokenizer) from a local model folder or a hub id, model in eval mode on `device`.

    The tokenizer gets a pad token (eos when it has none) and padding_side="left" (batched generation).
    A missing local folder raises DataError; a hub id that cannot be fetched (offline, unknown) raises
    OfflineError; both are one line that says to run `eggroll-ndcg lm pretrain` or pass a local folder.
    """
    name = str(name_or_path)
    path = Path(name).expanduser()
    local = path.exists() or isinstance(name_or_path, Path) or _looks_like_path(name)
    if local:
        if not (path / "config.json").is_file():
            raise DataError(f"{path}: not a model folder (no config.json); {PRETRAIN_HINT}")
        source = str(path)
    else:
        source = name
    try:
        tokenizer, model = _from_pretrained(source, dtype, local_files_only=True)
    except (OSError, ValueError) as error:
        if local:
            raise DataError(f"{path}: cannot load the model ({_first_line(error)}); {PRETRAIN_HINT}") from None
        _check_hub_reachable(name)
        try:
            tokenizer, model = _from_pretrained(source, dtype, local_files_only=False)
        except (OSError, ValueError) as error:
            raise OfflineError(f"cannot load model {name!r} from the hub ({_first_line(error)}); "
                               f"{PRETRAIN_HINT}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device).eval(), tokenizer
