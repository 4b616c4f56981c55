"""A whole EGGROLL population of a causal LM decoding in ONE batched ``generate`` call.

Rows are member-major: with ``P`` prompts and the ``2J`` members of a chunk, row ``i·P + p`` is member ``i``
on prompt ``p`` (the ``[P, T]`` left-padded prompt batch tiled ``2J`` times). During every forward pass of
``generate`` (prefill and each cached decode step, or the full recompute with ``use_cache=False``) the
engine's forward hooks (:func:`eggroll_ndcg.es.population.population_forward`) add to each perturbed
``nn.Linear`` output ``y = x Wᵀ`` the member's low-rank term

    y_i = x_i Wᵀ ± (sigma/sqrt r) (x_i B_j) A_jᵀ        (+ for member 2j, - for member 2j+1)

so member ``i`` runs ``W ± sigma·E_j`` on its rows and no member's weights are ever formed (memory
``O(J·r·(m+n))`` per matrix on top of the model). The KV cache just stores each row's perturbed keys and
values, so caching is exact. Positions come from the attention mask (``generate`` builds
``position_ids = cumsum(mask) - 1``), so left padding does not shift a prompt.

What is perturbed (:func:`lm_parameters`): the weights of ``nn.Linear`` layers by group, ``attention``
(q/k/v/o projections), ``mlp`` (gate/up/down) and ``unembedding`` (``lm_head``). The token embedding is an
``nn.Embedding`` (a lookup, not a Linear) and is not perturbed; norms and biases are not either. A Linear
weight tied to an embedding (``tie_word_embeddings=True``) is skipped: an update would also move the
input embedding, which the population never evaluated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..es.population import Population, PopulationChunk, population_forward
from .corpus import STOP_STRINGS

GROUPS = ("attention", "mlp", "unembedding")


def linear_group(module_name: str) -> str | None:
    """``"attention"``, ``"mlp"``, ``"unembedding"`` for a Linear's module name, or None (not perturbed).

    Llama / Qwen2 / Mistral names: ``model.layers.3.self_attn.q_proj``, ``model.layers.3.mlp.up_proj``,
    ``lm_head``; GPT-NeoX style ``attention`` / ``embed_out`` are recognised too."""
    parts = module_name.split(".")
    if parts[-1] in ("lm_head", "embed_out"):
        return "unembedding"
    if any(p in ("self_attn", "attn", "attention", "cross_attn") for p in parts):
        return "attention"
    if any(p in ("mlp", "feed_forward", "ffn") for p in parts):
        return "mlp"
    return None


def lm_parameters(model: nn.Module, *, include: Sequence[str] = GROUPS) -> dict[str, nn.Parameter]:
    """The ``nn.Linear`` weights the ES perturbs, by ``model.named_parameters()`` name, in module order.

    ``include`` picks groups among ``("attention", "mlp", "unembedding")``. Embeddings, norms and biases
    are never included; a Linear weight shared with an ``nn.Embedding`` (tied) is skipped."""
    unknown = set(include) - set(GROUPS)
    if unknown:
        raise ValueError(f"include: unknown groups {sorted(unknown)}; choose among {list(GROUPS)}")
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    names = {id(p): n for n, p in model.named_parameters()}
    out: dict[str, nn.Parameter] = {}
    for mod_name, mod in model.named_modules():
        if not isinstance(mod, nn.Linear) or id(mod.weight) in embedded:
            continue
        if linear_group(mod_name) in include and id(mod.weight) in names:
            out[names[id(mod.weight)]] = mod.weight
    if not out:
        raise ValueError(f"no nn.Linear weights of groups {list(include)} in {type(model).__name__}")
    return out


@dataclass(frozen=True)
class Generations:
    """Continuations ``texts[member][prompt]`` (decoded up to and including the stop, special tokens
    dropped) and ``token_counts[member][prompt]`` (generated tokens up to the stop string or eos, inclusive;
    ``max_new_tokens`` if neither came). Indexing and ``len`` act on ``texts``."""

    texts: list[list[str]]
    token_counts: list[list[int]]

    def __getitem__(self, i):
        return self.texts[i]

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def total_tokens(self) -> int:
        return sum(map(sum, self.token_counts))

    def extend(self, other: Generations) -> Generations:
        return Generations(self.texts + other.texts, self.token_counts + other.token_counts)


class _Generate(nn.Module):
    """Wraps ``model.generate`` as a module call so ``population_forward`` can hook the model's Linears."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, **kwargs):
        return self.model.generate(**kwargs)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def encode_prompts(tokenizer, prompts: Sequence[str], device: torch.device | str) -> tuple[Tensor, Tensor]:
    """``input_ids, attention_mask [P, T]``, left-padded (whatever the tokenizer's default side)."""
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True, padding_side="left")
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


def _cut(tokenizer, ids: list[int], stop_strings: Sequence[str], eos: set[int]) -> tuple[str, int]:
    """``(text, count)``: the shortest prefix that ends at an eos token or whose text contains a stop string."""
    for k, tok in enumerate(ids):
        if tok in eos:
            return tokenizer.decode(ids[:k], skip_special_tokens=True), k + 1
    full = tokenizer.decode(ids, skip_special_tokens=True)
    if not any(s in full for s in stop_strings):
        return full, len(ids)
    for k in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:k], skip_special_tokens=True)
        if any(s in text for s in stop_strings):
            return text, k
    return full, len(ids)  # pragma: no cover (the full text contains a stop string)


def generate_population(
    model: nn.Module,
    tokenizer,
    chunk: PopulationChunk | None,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    do_sample: bool = False,
    temperature: float = 1.0,
    seed: int = 0,
    use_cache: bool = True,
    stop_strings: Sequence[str] = STOP_STRINGS,
) -> Generations:
    """All ``chunk.num_members`` members on all ``P`` prompts in one ``generate`` call (``2J·P`` rows).

    Greedy by default; ``do_sample=True`` samples at ``temperature`` (no top-k / top-p), reproducibly from
    ``seed`` (the global RNG is forked, so the caller's stream is untouched; the draws depend on the batch
    layout, so a member sampled in another chunking draws other tokens). Decoding of a row stops at eos or
    a stop string (``generate(stop_strings=..., tokenizer=...)``); the whole call stops when every row has.
    Returns :class:`Generations` ``[member][prompt]``. ``chunk=None``: the unperturbed model, one "member".
    """
    device = _device(model)
    ids, mask = encode_prompts(tokenizer, prompts, device)
    n_rows = 1 if chunk is None else chunk.num_members
    kwargs = dict(
        input_ids=ids.repeat(n_rows, 1), attention_mask=mask.repeat(n_rows, 1), max_new_tokens=max_new_tokens,
        do_sample=do_sample, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        use_cache=use_cache, return_dict_in_generate=False,
    )
    if stop_strings:
        kwargs.update(stop_strings=list(stop_strings), tokenizer=tokenizer)
    if do_sample:
        kwargs.update(temperature=temperature, top_k=None, top_p=None)
    else:
        kwargs.update(temperature=None, top_k=None, top_p=None)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        if chunk is None:
            with torch.no_grad():
                out = model.generate(**kwargs)
        else:
            out = population_forward(_Generate(model), chunk, **kwargs)
    new = out[:, ids.shape[1]:].tolist()
    eos = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    cut = [_cut(tokenizer, row, stop_strings, eos) for row in new]
    n_p = len(prompts)
    texts = [[cut[i * n_p + p][0] for p in range(n_p)] for i in range(n_rows)]
    counts = [[cut[i * n_p + p][1] for p in range(n_p)] for i in range(n_rows)]
    return Generations(texts, counts)


def generate_members(
    model: nn.Module,
    tokenizer,
    population: Population,
    prompts: Sequence[str],
    *,
    pairs_per_chunk: int | None = None,
    seed: int = 0,
    **kwargs,
) -> Generations:
    """The whole population in chunks of ``pairs_per_chunk`` pairs (``2·pairs_per_chunk·P`` rows per call;
    None = one call), concatenated in member order. Greedy results do not depend on the chunking (up to
    float rounding of different GEMM shapes); chunk ``c`` samples with seed ``seed + pair_start``."""
    result = Generations([], [])
    for chunk in population.chunks(pairs_per_chunk):
        part = generate_population(model, tokenizer, chunk, prompts, seed=seed + chunk.pair_start, **kwargs)
        result = result.extend(part)
    return result


def population_logits(model: nn.Module, chunk: PopulationChunk, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """Logits ``[2J·P, T, V]`` of one forward pass of every member on a ``[P, T]`` left-padded batch
    (rows member-major, position ids from the mask as in ``generate``)."""
    n_rows = chunk.num_members
    mask = attention_mask.repeat(n_rows, 1)
    positions = (mask.long().cumsum(-1) - 1).clamp_min(0)
    out = population_forward(model, chunk, input_ids=input_ids.repeat(n_rows, 1), attention_mask=mask,
                             position_ids=positions, use_cache=False)
    return out.logits
