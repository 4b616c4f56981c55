"""Held-out judges of the language-model task (issue 18 §3); the training never sees any of them.

(a) retrieval: the summary s_i generated for function i is used as a query over the whole stdlib-code corpus
    (every document, in `collection.doc_ids` order) with a frozen encoder (default MiniLM, through
    `encoders.load_encoder` and the content-addressed embedding cache, so the corpus is encoded once); the
    top 10 by inner product (`data.retrieval.retrieve`, trec_eval's tie rule) form a run that
    `metrics.trec.evaluate` scores against function i's judgments: NDCG@10 of its own function (its only
    relevant document), i.e. 1/log2(1 + rank) if ranked in the top 10, else 0. The same path `train/evaluate.py`
    uses to score a split. An EMPTY summary retrieves nothing and scores 0 (it is never encoded).
(b) likelihood: mean log-prob per target token of the real docstring summary given the prompt, teacher forced,
        LL_i = (1/T) sum_{t=1..T} log p(y_t | prompt_i, y_<t),   y = tokens of target_i (no special tokens);
    and KL(tuned || base) on held-out prompts with Schulman's (2020) k3 estimator: x ~ p_tuned (temperature 1,
    no top-k/top-p), r_t = p_base(x_t | x_<t) / p_tuned(x_t | x_<t), per token k3_t = (r_t - 1) - log r_t >= 0,
    summed over the sampled continuation and averaged over `samples` draws. E_x[sum_t k3_t] = KL(tuned || base)
    of the (stopped) continuation distributions, since E_{x_t ~ p_tuned}[r_t - 1] = 0.
(c) conciseness (rewards.conciseness) of greedy summaries on held-out functions.

A continuation ends at the first eos token or at the token that completes a stop string (`corpus.STOP_STRINGS`:
closing quotes or a blank line), whichever comes first, and at `max_new_tokens` otherwise (inclusive: that
token is part of it). The same rule `count_generated` applies to budgets.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
import torch

from .corpus import STOP_STRINGS, Task, summary_of
from .rewards import conciseness, token_lengths

__all__ = ["retrieval_run", "retrieval_judge", "docstring_log_likelihood", "kl_to_base", "generate_summaries",
           "continuation_length", "judge", "RETRIEVAL_MEASURE"]

RETRIEVAL_MEASURE = "ndcg@10"


# ------------------------------------------------------------------------------------------- (a) retrieval


@functools.lru_cache(maxsize=4)
def _encoder(name: str, device: str):
    from ..encoders import load_encoder
    return load_encoder(name, device=device)


def _corpus(collection, encoder):
    from ..data.stdlib_code import load_stdlib_code
    from ..encoders import encode_cached
    collection = collection if collection is not None else load_stdlib_code()
    docs = encode_cached(encoder, list(collection.doc_texts), kind="document", progress=False)
    return collection, docs


def retrieval_run(summaries: Sequence[str], task_ids: Sequence[str], *, encoder: str = "minilm", collection=None,
                  device: str = "cpu", depth: int = 10) -> tuple[dict, dict]:
    """(run, qrels) keyed by row label "i" (so repeated task ids stay apart): run["i"] = the top-`depth`
    documents {doc_id: score} of summary i (absent for an empty summary), qrels["i"] = judgments of task i."""
    from ..data.retrieval import retrieve, to_run
    if len(summaries) != len(task_ids):
        raise ValueError(f"{len(summaries)} summaries for {len(task_ids)} task ids")
    enc = _encoder(encoder, device)
    collection, docs = _corpus(collection, enc)
    missing = [t for t in task_ids if t not in collection.judgments]
    if missing:
        raise ValueError(f"{collection.name}: no judgments for task id {missing[0]!r}")
    labels = [str(i) for i in range(len(summaries))]
    qrels = {label: dict(collection.judgments[t]) for label, t in zip(labels, task_ids)}
    rows = [i for i, s in enumerate(summaries) if s.strip()]
    run: dict[str, dict[str, float]] = {}
    if rows:
        queries = torch.from_numpy(np.asarray(enc.encode([summaries[i] for i in rows], kind="query",
                                                         progress=False), dtype=np.float32))
        scores, indices = retrieve(queries, docs, min(depth, docs.shape[0]), doc_ids=collection.doc_ids,
                                   ignore_identical_ids=False)
        run = to_run([labels[i] for i in rows], list(collection.doc_ids), scores, indices)
    return run, qrels


def retrieval_judge(summaries: Sequence[str], task_ids: Sequence[str], *, encoder: str = "minilm",
                    collection=None, device: str = "cpu") -> np.ndarray:
    """Per summary, NDCG@10 of its own function over the full corpus (module docstring) -> float64 [n]."""
    from ..metrics.trec import evaluate
    run, qrels = retrieval_run(summaries, task_ids, encoder=encoder, collection=collection, device=device)
    evaluation = evaluate(run, qrels, measures=(RETRIEVAL_MEASURE,), missing_as_zero=True)
    return np.array([evaluation.per_query[str(i)][RETRIEVAL_MEASURE] for i in range(len(summaries))])


# ----------------------------------------------------------------------------------------- (b) likelihood


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


def _token_logprobs(model, rows: list[tuple[list[int], list[int]]], pad_id: int) -> list[torch.Tensor]:
    """Teacher forcing: for each (context ids, continuation ids), log p(c_t | context, c_<t) -> [len(c)].
    One right-padded forward pass (positions 0.. for every row, so padding changes nothing)."""
    device = _device_of(model)
    length = max(len(a) + len(b) for a, b in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, (a, b) in enumerate(rows):
        ids[i, : len(a) + len(b)] = torch.tensor(a + b)
        mask[i, : len(a) + len(b)] = 1
    with torch.no_grad():
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
    out = []
    for i, (a, b) in enumerate(rows):
        predicting = logits[i, len(a) - 1: len(a) + len(b) - 1].float()           # [len(b), V] -> tokens of b
        logp = torch.log_softmax(predicting, dim=-1)
        out.append(logp.gather(1, torch.tensor(b, device=device)[:, None])[:, 0].cpu())
    return out


def _prompt_ids(tokenizer, prompt: str) -> list[int]:
    """Prompt ids exactly as `generate` sees them (the tokenizer's default special tokens)."""
    ids = tokenizer(prompt)["input_ids"]
    if not ids:
        raise ValueError("a prompt must have at least one token")
    return list(ids)


def docstring_log_likelihood(model, tokenizer, tasks: Sequence[Task], *, batch_size: int = 16) -> np.ndarray:
    """Per task, (1/T) sum_t log p(y_t | prompt, y_<t) over the T target tokens -> float64 [n]."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    values: list[float] = []
    for start in range(0, len(tasks), batch_size):
        chunk = tasks[start: start + batch_size]
        rows = [(_prompt_ids(tokenizer, t.prompt), list(tokenizer(t.target, add_special_tokens=False)["input_ids"]))
                for t in chunk]
        for task, (_, target) in zip(chunk, rows):
            if not target:
                raise ValueError(f"task {task.id!r}: empty target")
        values.extend(float(lp.mean()) for lp in _token_logprobs(model, rows, pad))
    return np.array(values, dtype=np.float64)


def continuation_length(ids: Sequence[int], tokenizer, *, eos_ids: Sequence[int] = (),
                        stop_strings: Sequence[str] = STOP_STRINGS) -> int:
    """Tokens of a generated continuation up to and including the first eos or the token that completes a
    stop string; len(ids) when neither occurs."""
    eos = set(eos_ids) | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())
    for k, token in enumerate(ids, start=1):
        if token in eos:
            return k
        text = tokenizer.decode(list(ids[:k]), skip_special_tokens=True)
        if any(s in text for s in stop_strings):
            return k
    return len(ids)


def _generate(model, tokenizer, prompts: list[str], *, max_new_tokens: int, do_sample: bool) -> list[list[int]]:
    """Raw new-token ids per prompt (one left-padded generate call); stops at eos or a stop string."""
    device = _device_of(model)
    batch = tokenizer(prompts, return_tensors="pt", padding=True).to(device)
    kwargs = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0) if do_sample else dict(do_sample=False)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=max_new_tokens, stop_strings=list(STOP_STRINGS),
                             tokenizer=tokenizer, pad_token_id=tokenizer.pad_token_id, **kwargs)
    new = out[:, batch["input_ids"].shape[1]:].cpu().tolist()
    return [row[: continuation_length(row, tokenizer)] for row in new]


def _forked_rng(device: torch.device):
    """A context in which seeding does not disturb the caller's RNG state (CPU, and the CUDA device in use)."""
    return torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else [])


def kl_to_base(model, base, tokenizer, tasks: Sequence[Task], *, samples: int = 4, max_new_tokens: int = 32,
               seed: int = 0, batch_size: int = 64) -> np.ndarray:
    """Per task, the k3 estimate of KL(model || base) of the continuation (module docstring) -> float64 [n].
    Samples x ~ model at temperature 1 (full distribution); deterministic given `seed`; the global RNG is
    left as it was. Zero when `base` computes the same distribution as `model`."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows = [t.prompt for t in tasks for _ in range(samples)]
    device = _device_of(model)
    sums: list[float] = []
    with _forked_rng(device):
        torch.manual_seed(seed)
        for start in range(0, len(rows), batch_size):
            prompts = rows[start: start + batch_size]
            continuations = _generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, do_sample=True)
            pairs = [(_prompt_ids(tokenizer, p), c) for p, c in zip(prompts, continuations)]
            keep = [i for i, (_, c) in enumerate(pairs) if c]
            k3 = [0.0] * len(pairs)
            if keep:
                tuned = _token_logprobs(model, [pairs[i] for i in keep], pad)
                ref = _token_logprobs(base, [pairs[i] for i in keep], pad)
                for i, lt, lb in zip(keep, tuned, ref):
                    log_r = (lb - lt).double()
                    k3[i] = float((torch.expm1(log_r) - log_r).sum())
            sums.extend(k3)
    return np.array(sums, dtype=np.float64).reshape(len(tasks), samples).mean(axis=1)


# ----------------------------------------------------------------------------------------------- all judges


def generate_summaries(model, tokenizer, tasks: Sequence[Task], *, max_new_tokens: int,
                       batch_size: int = 32) -> tuple[list[str], list[int]]:
    """Greedy summaries (summary_of the decoded continuation) and generated token counts per task."""
    summaries, counts = [], []
    for start in range(0, len(tasks), batch_size):
        chunk = [t.prompt for t in tasks[start: start + batch_size]]
        for ids in _generate(model, tokenizer, chunk, max_new_tokens=max_new_tokens, do_sample=False):
            summaries.append(summary_of(tokenizer.decode(ids, skip_special_tokens=True)))
            counts.append(len(ids))
    return summaries, counts


def judge(model, base, tokenizer, tasks: Sequence[Task], *, max_new_tokens: int, device: str = "cpu",
          encoder: str = "minilm", collection=None, kl_samples: int = 4, seed: int = 0,
          summaries: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """All held-out judges per task (greedy summaries of `model` unless `summaries` are given):
    conciseness, retrieval_ndcg@10, log_likelihood, kl_to_base, summary_tokens. `model`/`base` must already be
    on `device` (it is the encoder's device)."""
    tasks = list(tasks)
    if summaries is None:
        summaries, _ = generate_summaries(model, tokenizer, tasks, max_new_tokens=max_new_tokens)
    summaries = list(summaries)
    lengths = token_lengths(summaries, tokenizer)
    return {
        "conciseness": conciseness(summaries, [t.target for t in tasks], tokenizer).double().numpy(),
        "retrieval_ndcg@10": retrieval_judge(summaries, [t.id for t in tasks], encoder=encoder,
                                             collection=collection, device=device),
        "log_likelihood": docstring_log_likelihood(model, tokenizer, tasks),
        "kl_to_base": kl_to_base(model, base, tokenizer, tasks, samples=kl_samples,
                                 max_new_tokens=max_new_tokens, seed=seed),
        "summary_tokens": np.array(lengths, dtype=np.float64),
    }
