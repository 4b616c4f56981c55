"""The sort-free rank path: exact rank counts (plain and compiled kernels), the fallback, and the auto rule."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eggroll_ndcg.metrics import rank_count, ranking_metrics
from eggroll_ndcg.metrics.rank_count import beating_counts, count_plain
from eggroll_ndcg.metrics.relevant import choose_method, relevant_slots

MEASURES = ("ndcg", "mrr", "recall", "map")


def reference_ranks(s: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """0-based ranks by a full stable sort: real candidates by (score desc, position asc), masked ones last.

    ``s`` [A, B, P], ``mask`` [B, P], ``pos`` [B, R] -> [A, B, R] long.
    """
    A, B, P = s.shape
    by_score = torch.sort(s, dim=-1, descending=True, stable=True).indices
    masked_last = torch.sort((~mask.expand(A, B, P).gather(-1, by_score)).int(), dim=-1, stable=True).indices
    order = by_score.gather(-1, masked_last)
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(P).expand(A, B, P))
    return rank.gather(-1, pos.expand(A, B, -1))


def counting_inputs(s: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, dtype: torch.dtype):
    """pad [B, P] (0 / NaN) and srel [A, B, R] as the rank path builds them (``s`` is in ``dtype``)."""
    pad = torch.where(mask, 0.0, float("nan")).to(dtype)
    srel = s.gather(-1, pos.expand(s.shape[0], -1, -1)).to(dtype)
    return pad, srel


def tied_case(A: int, B: int, P: int, R: int, seed: int, levels: int | None = 4):
    """Scores with many ties (``levels`` distinct values; None = continuous), a mask, real slot positions."""
    generator = torch.Generator().manual_seed(seed)
    if levels is None:
        s = torch.randn(A, B, P, generator=generator)
    else:
        s = torch.randint(0, levels, (A, B, P), generator=generator).float()
        s[s == 0] = -math.inf  # -inf is a real score too
    mask = torch.rand(B, P, generator=generator) < 0.85
    keys = torch.rand(B, P, generator=generator) + mask.float()  # real candidates first
    pos = torch.topk(keys, R, dim=-1).indices
    return s, mask, pos


def fresh_compiler_state(monkeypatch) -> None:
    """New, never-tried compiled kernels for one test (restored after it)."""
    for name in ("_COMPILED", "_EXACT"):
        old = getattr(rank_count, name)
        monkeypatch.setattr(rank_count, name, rank_count._Compiled(old.source, old.dynamic))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_plain_counts_equal_a_full_stable_sort_for_every_chunk_width(data):
    A, B, P = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)), data.draw(st.integers(2, 30))
    R = data.draw(st.integers(1, P))
    seed, levels = data.draw(st.integers(0, 10**6)), data.draw(st.sampled_from([2, 5]))
    s, mask, pos = tied_case(A, B, P, R, seed=seed, levels=levels)
    mask.scatter_(-1, pos, True)  # the counted candidates are real ones
    pad, srel = counting_inputs(s, mask, pos, torch.float64)
    want = reference_ranks(s, mask, pos)
    chunk = data.draw(st.sampled_from([1, 7, 1 << 22]))
    got = count_plain(s, pad, srel, pos, chunk_elements=chunk)
    assert torch.equal(got.long(), want)


@pytest.mark.parametrize("levels", [3, None])  # heavy ties (recounted rows) and continuous scores
@pytest.mark.parametrize("dtype, compute", [(torch.float32, torch.float32), (torch.float64, torch.float64),
                                            (torch.bfloat16, torch.float32)])
def test_compiled_counts_equal_the_plain_counts(levels, dtype, compute, monkeypatch):
    if not rank_count.compiled_kernel_usable(torch.device("cpu")):
        pytest.skip("torch.compile is unavailable here (no C++ compiler or turned off)")
    monkeypatch.setattr(rank_count, "MIN_COMPILED_WORK", 0)  # the tied pools are recounted by the compiled kernel
    s, mask, pos = tied_case(16, 8, 64, 5, seed=1, levels=levels)
    s = s.to(dtype)
    pad, srel = counting_inputs(s, mask, pos, compute)
    valid = torch.ones(pos.shape, dtype=torch.bool)
    valid[0, -1] = False  # an unused slot: rank 0, ignored
    got = rank_count.count_compiled(s, pad, pos, valid)
    assert got is not None, rank_count._COMPILED.failed
    assert got[:, 0, -1].eq(0).all()
    valid[0, -1] = True
    got = rank_count.count_compiled(s, pad, pos, valid)
    assert got.dtype == compute
    assert torch.equal(got.long(), reference_ranks(s, mask, pos))
    assert torch.equal(got, count_plain(s, pad, srel, pos))
    if levels is not None:
        assert rank_count._EXACT.keys and rank_count._EXACT.failed is None


def test_a_failing_compiler_falls_back_to_the_plain_kernel_once_with_a_warning(monkeypatch):
    fresh_compiler_state(monkeypatch)

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", broken)
    s, mask, pos = tied_case(4, 3, 20, 3, seed=2)
    pad, srel = counting_inputs(s, mask, pos, torch.float32)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        got = beating_counts(s, pad, pos, torch.ones(pos.shape, dtype=torch.bool), kernel="compiled")
    assert torch.equal(got.long(), reference_ranks(s, mask, pos))
    assert not rank_count.compiled_kernel_usable(torch.device("cpu"))
    assert rank_count.count_compiled(s, pad, pos, torch.ones(pos.shape, dtype=torch.bool)) is None  # no retry


def test_the_environment_variable_turns_the_compiled_kernel_off(monkeypatch):
    fresh_compiler_state(monkeypatch)
    monkeypatch.setenv(rank_count.COMPILE_ENV, "0")
    assert not rank_count.compiled_kernel_usable(torch.device("cpu"))
    s, mask, pos = tied_case(2, 2, 10, 2, seed=3)
    pad, srel = counting_inputs(s, mask, pos, torch.float32)
    valid = torch.ones(pos.shape, dtype=torch.bool)
    assert rank_count.count_compiled(s, pad, pos, valid) is None
    assert torch.equal(beating_counts(s, pad, pos, valid, kernel="compiled").long(), reference_ranks(s, mask, pos))


def test_relevant_slots_hold_the_unmasked_positive_candidates_in_position_order():
    grades = torch.tensor([[0.0, 2.0, 1.0, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0, 0.5]])
    mask = torch.tensor([[True, True, False, True, True], [True] * 5])
    slots = relevant_slots(torch.zeros(7, 2, 5), grades, mask, torch.float32)
    assert (slots.A, slots.B) == (7, 2)
    assert slots.count == 2  # the largest count (2), already a multiple of SLOT_MULTIPLE
    assert slots.pos[0].tolist() == [1, 4] and slots.valid[0].tolist() == [True, True]
    assert slots.pos[1, 0].item() == 4 and slots.valid[1].tolist() == [True, False]
    assert slots.grades.tolist() == [[2.0, 3.0], [0.5, 0.0]]
    assert torch.isnan(slots.pad[0, 2]) and slots.pad[0, 0] == 0


def test_grades_with_their_own_member_dimension_are_expanded_to_the_scores():
    generator = torch.Generator().manual_seed(8)
    scores = torch.randn(3, 4, 12, generator=generator)
    grades = torch.randint(0, 3, (3, 1, 12), generator=generator).float()  # not a suffix of [3, 4]
    slots = relevant_slots(scores, grades, None, torch.float32)
    assert (slots.A, slots.B) == (1, 12)
    ideal = torch.full((1, 5), 2.0)
    a = ranking_metrics(scores, grades, ks=[3, 20], ideal_grades=ideal, method="rank")
    b = ranking_metrics(scores, grades, ks=[3, 20], ideal_grades=ideal, method="topk")
    for m in MEASURES:
        torch.testing.assert_close(a[m], b[m])


def test_auto_counts_ranks_for_a_few_relevant_in_a_large_batch_and_ranks_the_top_k_otherwise(monkeypatch):
    cpu = torch.device("cpu")
    batch = torch.zeros(256, 32, 256)  # work = 256 * 32 * R * 256 >= MIN_COMPILED_WORK for R >= 2
    few = relevant_slots(batch, (torch.arange(256) < 3).float().expand(32, 256), None, torch.float32)
    many = relevant_slots(batch, (torch.arange(256) < 40).float().expand(32, 256), None, torch.float32)
    none = relevant_slots(batch, torch.zeros(32, 256), None, torch.float32)
    small = relevant_slots(batch[:2, :2], (torch.arange(256) < 3).float(), None, torch.float32)
    assert few.A * few.B * few.count * 256 >= rank_count.MIN_COMPILED_WORK
    usable = rank_count.compiled_kernel_usable(cpu)
    assert choose_method(few, 256, cpu) == ("rank" if usable else "topk")
    assert choose_method(many, 256, cpu) == "topk"  # 40 relevant > RANK_MAX_RELEVANT
    assert choose_method(none, 256, cpu) == "rank"  # nothing to count
    assert choose_method(small, 256, cpu) == "topk"  # no compiled kernel for a small batch
    assert choose_method(few, 256, torch.device("cuda")) == "topk"
    monkeypatch.setenv(rank_count.COMPILE_ENV, "0")  # no compiler: top-k
    assert choose_method(few, 256, cpu) == "topk"


@pytest.mark.parametrize("gain", ["linear", "exponential"])
def test_both_paths_and_auto_agree_on_a_fitness_batch_with_a_few_relevant_per_query(gain):
    generator = torch.Generator().manual_seed(9)
    N, Q, P = 32, 16, 100
    scores = torch.randn(N, Q, P, generator=generator)
    scores[:8] = torch.round(scores[:8] * 2) / 2  # some members with many ties
    grades = torch.zeros(Q, P)
    chosen = torch.randint(0, P, (Q, 4), generator=generator)  # up to 4 relevant per query
    grades.scatter_(-1, chosen, torch.randint(1, 4, (Q, 4), generator=generator).float())
    mask = torch.rand(Q, P, generator=generator) < 0.9
    ideal = torch.cat([torch.sort(grades, -1, descending=True).values[:, :6], torch.ones(Q, 2)], -1)
    out = {method: ranking_metrics(scores, grades, ks=[1, 5, 10, 500], ideal_grades=ideal, mask=mask, gain=gain,
                                   method=method) for method in ("topk", "rank", "auto")}
    for m in MEASURES:
        torch.testing.assert_close(out["rank"][m], out["topk"][m], atol=1e-6, rtol=0)
        torch.testing.assert_close(out["auto"][m], out["topk"][m], atol=1e-6, rtol=0)
    assert (out["topk"]["ndcg"] > 0).any() and (out["topk"]["ndcg"] < 1).any()


def test_an_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="method"):
        ranking_metrics(torch.zeros(1, 2), torch.zeros(1, 2), ks=[1], ideal_grades=torch.zeros(1, 1), method="sort")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the rank path's plain kernel on a GPU)")
def test_the_rank_path_on_cuda_equals_cpu_and_the_top_k_path():
    s, mask, pos = tied_case(64, 8, 256, 6, seed=4)
    pad, srel = counting_inputs(s, mask, pos, torch.float32)
    gpu = beating_counts(s.cuda(), pad.cuda(), pos.cuda(), torch.ones(pos.shape, dtype=torch.bool, device="cuda"))
    assert torch.equal(gpu.cpu().long(), reference_ranks(s, mask, pos))
    grades = torch.zeros(8, 256).scatter_(-1, pos, 2.0)
    ideal = torch.full((8, 8), 2.0)
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        x = s.to(dtype)
        rank = ranking_metrics(x.cuda(), grades.cuda(), ks=[1, 10, 300], ideal_grades=ideal.cuda(), mask=mask.cuda(),
                               method="rank")
        topk = ranking_metrics(x, grades, ks=[1, 10, 300], ideal_grades=ideal, mask=mask, method="topk")
        for m in MEASURES:
            torch.testing.assert_close(rank[m].cpu(), topk[m])
