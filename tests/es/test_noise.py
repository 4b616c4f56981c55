"""Claims about the counter-based noise (es/noise.py)."""

from __future__ import annotations

import math

import torch

from eggroll_ndcg.es import hash32, lowrank_factors, param_id, standard_normal
from eggroll_ndcg.es.noise import base_key, full_noise, pair_keys


def _lowbias32_reference(x: int) -> int:
    x &= 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def test_hash_matches_exact_integer_reference_so_nothing_overflows():
    """Claim: the int64 tensor hash equals the exact 32-bit mixer computed with Python's unbounded ints,
    over the whole 32-bit range (so the 16-bit split multiply never overflows int64, on any device)."""
    xs = torch.cat([torch.tensor([0, 1, 0xFFFF, 0x10000, 0xFFFFFFFF]), torch.randint(0, 2**32, (3000,))])
    got = hash32(xs).tolist()
    assert got == [_lowbias32_reference(int(x)) for x in xs]


def test_factors_of_a_pair_do_not_depend_on_which_pairs_are_asked_together():
    """Claim: factors are a function of (seed, epoch, pair, parameter) only. Generating pairs 0..63 at once,
    in chunks of 5, or pair by pair in reverse order gives bit-identical tensors."""
    pid = param_id("head.weight")
    A, B = lowrank_factors(7, 3, pid, torch.arange(64), 10, 6, 2)
    chunks = [lowrank_factors(7, 3, pid, torch.arange(s, min(s + 5, 64)), 10, 6, 2) for s in range(0, 64, 5)]
    assert torch.equal(A, torch.cat([a for a, _ in chunks])) and torch.equal(B, torch.cat([b for _, b in chunks]))
    for j in reversed(range(64)):
        a, b = lowrank_factors(7, 3, pid, torch.tensor([j]), 10, 6, 2)
        assert torch.equal(a[0], A[j]) and torch.equal(b[0], B[j])


def test_layout_A_then_B_row_major_in_one_normal_stream():
    """Claim (documented layout): A is normals 0..m·r-1 of the pair's stream reshaped [m, r], B is the next
    n·r normals reshaped [n, r]; a vector parameter reads normals 0..numel-1."""
    pid, pairs = param_id("w"), torch.arange(3)
    keys = pair_keys(base_key(11, 0, pid), pairs)
    z = standard_normal(keys, (4 + 5) * 3, dtype=torch.float64)
    A, B = lowrank_factors(11, 0, pid, pairs, 4, 5, 3, dtype=torch.float64)
    assert torch.equal(A, z[:, :12].reshape(3, 4, 3)) and torch.equal(B, z[:, 12:].reshape(3, 5, 3))
    eps = full_noise(11, 0, pid, pairs, (2, 4), dtype=torch.float64)
    assert torch.equal(eps, z[:, :8].reshape(3, 2, 4))


def test_noise_is_standard_normal():
    """Claim: the factors are N(0, 1): mean 0, variance 1, kurtosis 3, and the normal quantiles, to within
    a few standard errors over 400k draws."""
    A, _ = lowrank_factors(0, 0, param_id("x"), torch.arange(400), 1000, 0, 1, dtype=torch.float64)
    z = A.flatten()
    n = z.numel()
    assert abs(float(z.mean())) < 5 / math.sqrt(n)
    assert abs(float(z.var()) - 1) < 5 * math.sqrt(2 / n)
    assert abs(float((z**4).mean()) - 3) < 5 * math.sqrt(96 / n)
    for p in (0.01, 0.1, 0.5, 0.9, 0.99):
        expected = math.sqrt(2) * torch.erfinv(torch.tensor(2 * p - 1, dtype=torch.float64))
        assert abs(float(torch.quantile(z[:100000], p)) - float(expected)) < 0.03


def test_independent_across_parameters_pairs_and_epochs():
    """Claim: streams for different parameters (same seed, epoch, pairs), different pairs, different epochs
    and different seeds are uncorrelated: |corr| < 5/sqrt(n) for every such couple."""
    pairs = torch.arange(200)
    base = lowrank_factors(1, 0, param_id("layer1.weight"), pairs, 50, 50, 1, dtype=torch.float64)[0].flatten()
    others = {
        "other parameter": lowrank_factors(1, 0, param_id("layer2.weight"), pairs, 50, 50, 1, dtype=torch.float64)[0],
        "next epoch": lowrank_factors(1, 1, param_id("layer1.weight"), pairs, 50, 50, 1, dtype=torch.float64)[0],
        "other seed": lowrank_factors(2, 0, param_id("layer1.weight"), pairs, 50, 50, 1, dtype=torch.float64)[0],
        "next pair": lowrank_factors(1, 0, param_id("layer1.weight"), pairs + 1, 50, 50, 1, dtype=torch.float64)[0],
    }
    bound = 5 / math.sqrt(base.numel())
    for label, other in others.items():
        corr = float(torch.corrcoef(torch.stack([base, other.flatten()]))[0, 1])
        assert abs(corr) < bound, label
    # A and B of one pair are independent too.
    A, B = lowrank_factors(1, 0, param_id("w"), pairs, 40, 40, 1, dtype=torch.float64)
    assert abs(float(torch.corrcoef(torch.stack([A.flatten(), B.flatten()]))[0, 1])) < 5 / math.sqrt(A.numel())


def test_each_perturbation_has_rank_r():
    """Claim (low-rank structure): E_j = A_j B_jᵀ / sqrt(r) has rank exactly r (< min(m, n))."""
    for r in (1, 3):
        A, B = lowrank_factors(0, 0, param_id("w"), torch.arange(4), 12, 9, r, dtype=torch.float64)
        E = A @ B.transpose(1, 2) / math.sqrt(r)
        assert all(int(torch.linalg.matrix_rank(e)) == r for e in E)
