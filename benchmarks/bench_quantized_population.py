"""Binary population scoring: the pair-shared sensitivity mask (quant.outputs.population_scores) against forming
every member's outputs densely (lowrank_delta), J = 64 pairs, Q = 16, P = 64, m = n = 384, one thread.

OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/bench_quantized_population.py
"""
import time, torch, torch.nn.functional as F
from eggroll_ndcg.quant.outputs import OutputCodec, population_scores
from eggroll_ndcg.es.perturb import lowrank_delta
torch.manual_seed(0); torch.set_num_threads(1)
n = m = 384; J, Q, P = 64, 16, 64
W = torch.eye(m); hq = F.normalize(torch.randn(Q, n), dim=-1); hd = F.normalize(torch.randn(Q, P, n), dim=-1)
A, B = torch.randn(J, m, 1), torch.randn(J, n, 1)
codec = OutputCodec("binary")
def dense():  # every member's outputs Wh ± cA(Bᵀh) formed, coded, scored
    q = lowrank_delta(hq.expand(2 * J, Q, n), A, B, 0.02) + hq @ W.T
    d = lowrank_delta(hd.expand(2 * J, Q, P, n), A, B, 0.02) + hd @ W.T
    return codec.pool_scores(q, d)
for name, f in (("pair-shared mask", lambda: population_scores(codec, W, hq, hd, A, B, 0.02)), ("dense members", dense)):
    f(); t = time.perf_counter(); out = f(); print(name, round(time.perf_counter() - t, 3), "s")
print("equal:", torch.equal(population_scores(codec, W, hq, hd, A, B, 0.02), dense()))
a, b = population_scores(codec, W, hq, hd, A, B, 0.02), dense()
print("scores differing:", int((a != b).sum()), "of", a.numel(), "max diff", float((a - b).abs().max()))
hq64, hd64, W64, A64, B64 = hq.double(), hd.double(), W.double(), A.double(), B.double()
q = lowrank_delta(hq64.expand(2 * J, Q, n), A64, B64, 0.02) + hq64 @ W64.T
d = lowrank_delta(hd64.expand(2 * J, Q, P, n), A64, B64, 0.02) + hd64 @ W64.T
print("float64 equal:", torch.equal(population_scores(codec, W64, hq64, hd64, A64, B64, 0.02), codec.pool_scores(q, d)))
