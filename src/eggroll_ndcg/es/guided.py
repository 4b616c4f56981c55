"""Guided ES (Maheswaranathan et al. 2019): EGGROLL noise plus noise in the span of recent surrogate gradients.

The paper samples ``eps ~ N(0, sigma² Σ)`` with ``Σ = (α/n) I_n + ((1-α)/k) U Uᵀ``, ``U [n, k]`` an
orthonormal basis of the last k surrogate gradients, and estimates

    g = β / (2 sigma² P) Σ_{i<P} eps_i (f(x + eps_i) - f(x - eps_i)),      E[g] ≈ β Σ ∇f  (small sigma).

Here the member noise is ``sigma·Z_j`` with the engine's convention ``Cov(vec E_j) = I_D`` (D perturbed
weights), so the same split of the noise energy between the two parts reads

    Z_j = sqrt(α) E_j + sqrt((1-α) D / k) U eps'_j,      Cov(vec Z_j) = Σ' = α I_D + (1-α) (D/k) U Uᵀ = D·Σ,

with ``E_j = A_j B_jᵀ / sqrt(r)`` the EGGROLL low-rank factors of pair j (the isotropic part keeps its
low-rank structure and its counter-based noise) and ``eps'_j [k]`` standard normal from the same counters
under the id of :data:`GUIDE_ID`. Both parts have expected squared norm α D and (1-α) D: ``sigma`` means
what it means for EGGROLL. The estimator is the paper's, in the engine's units:

    g = β / (N sigma) Σ_j (f̃_{2j} - f̃_{2j+1}) Z_j = β sqrt(α) g_EGGROLL + β sqrt((1-α)D/k)/(N sigma) Σ_j d_j U eps'_j

so ``E[g] ≈ β Σ' ∇f``: α trades the bias of the surrogate (small α: the update follows U Uᵀ ∇f) against
the variance of blind search (α = 1: plain EGGROLL, the estimate is then the engine's own, bit for bit, at β = 1).

Low-rank subspace. To keep the exact closed-form scoring, each surrogate gradient is stored per perturbed
matrix as its best rank-ρ approximation ``g_i ≈ P_i Q_iᵀ`` (``P_i [m, ρ]`` with the singular values,
``Q_i [n, ρ]``; ``grad_rank = min(m, n)`` keeps it exact). The basis is ``U = G V Λ^{-1/2}`` from the
eigendecomposition ``GᵀG = V Λ Vᵀ`` of the (Frobenius) Gram matrix of the K stored gradients (directions with
``λ < 1e-10 λ_max`` dropped, so k = the rank of the span, at most K). Then ``U eps' = Σ_i c_i g_i`` with
``c = V Λ^{-1/2} eps'``, and member j's total noise on a matrix is one low-rank product

    Z_j = Ã_j B̃ᵀ / sqrt(R),  Ã_j = [sqrt(αR/r) A_j | γ sqrt(R) (c_j1 P_1, ..., c_jK P_K)],  B̃ = [B_j | Q_1 .. Q_K]

with ``R = r + Kρ`` and ``γ = sqrt((1-α)D/k)``: ``perturb.bilinear_population_scores`` scores it unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .engine import EggrollES
from .estimate import es_gradient
from .noise import base_key, pair_keys, param_id, standard_normal
from .population import Population
from .shaping import antithetic_differences

GUIDE_ID = param_id("guided_es/subspace")  # the counter id of eps'


@dataclass(frozen=True)
class Subspace:
    """The guiding subspace of one step. ``factors[name]`` = ``(P [K, m, ρ], Q [K, n, ρ])``: the K stored
    gradients of matrix ``name`` as ``P_i Q_iᵀ``; ``coef [K, k]`` = ``V Λ^{-1/2}`` (so ``U = G coef``);
    ``dim`` = D, the number of perturbed weights."""

    factors: dict[str, tuple[Tensor, Tensor]]
    coef: Tensor
    dim: int

    @property
    def k(self) -> int:
        return self.coef.shape[1]

    def gradient(self, name: str, weights: Tensor) -> Tensor:
        """``Σ_i weights_i g_i`` for matrix ``name`` (``weights [K]``) -> ``[m, n]``."""
        P, Q = self.factors[name]
        return torch.einsum("i,imr,inr->mn", weights.to(P), P, Q)


def truncate(gradient: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """Best rank-``rank`` approximation of a matrix ``[m, n]`` (more dims are flattened as the engine does):
    ``(P [m, ρ] = U_ρ S_ρ, Q [n, ρ] = V_ρ)``, ρ = min(rank, m, n); ``P Qᵀ`` is exact when ρ = min(m, n)."""
    g = gradient.reshape(gradient.shape[0], -1)
    u, s, vh = torch.linalg.svd(g.double(), full_matrices=False)
    rho = min(rank, s.shape[0])
    return (u[:, :rho] * s[:rho]).to(g.dtype), vh[:rho].T.to(g.dtype)


def build_subspace(history: list[dict[str, tuple[Tensor, Tensor]]], dim: int, *, tol: float = 1e-10) -> Subspace | None:
    """The orthonormal basis of the span of the stored gradients ``history`` (oldest first); None when they
    are all zero. ``Gram_il = Σ_params <P_i Q_iᵀ, P_l Q_lᵀ>_F = Σ (P_iᵀ P_l) ⊙ (Q_iᵀ Q_l)`` in float64."""
    if not history:
        return None
    names = list(history[0])
    factors = {name: (torch.stack([h[name][0] for h in history]), torch.stack([h[name][1] for h in history]))
               for name in names}
    K = len(history)
    gram = torch.zeros(K, K, dtype=torch.float64)
    for P, Q in factors.values():
        gram += torch.einsum("imr,lms,inr,lns->il", P.double(), P.double(), Q.double(), Q.double()).cpu()
    eigenvalues, vectors = torch.linalg.eigh(gram)
    if eigenvalues[-1] <= 0:
        return None
    kept = eigenvalues > tol * eigenvalues[-1]
    coef = vectors[:, kept] / eigenvalues[kept].sqrt()
    return Subspace(factors=factors, coef=coef, dim=dim)


class GuidedES(EggrollES):
    """EGGROLL with guided noise (module docstring). Per step: ``set_guide(gradients)`` (the surrogate
    gradient at the current weights, ``{name: Tensor}``; the last ``k`` are kept), ``ask()``, score with
    ``member_factors``, ``tell(fitness)``. ``alpha`` in (0, 1], ``beta`` > 0 (the paper's scale),
    ``grad_rank`` ρ of the stored gradients. All other arguments are ``EggrollES``'s."""

    def __init__(self, named_params, *, alpha: float, k: int, beta: float = 1.0, grad_rank: int = 8, **kwargs):
        super().__init__(named_params, **kwargs)
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if any(spec.kind != "lowrank" for spec in self.specs):
            raise ValueError("guided ES perturbs matrices only; use vector_noise='freeze' for vector parameters")
        self.alpha, self.k, self.beta, self.grad_rank = float(alpha), int(k), float(beta), int(grad_rank)
        self.dim = sum(math.prod(spec.shape) for spec in self.specs)
        self.history: list[dict[str, tuple[Tensor, Tensor]]] = []
        self.subspace: Subspace | None = None

    @property
    def guided(self) -> bool:
        """Whether this step's noise has a subspace part (alpha < 1 and a non-zero guide)."""
        return self.alpha < 1 and self.subspace is not None

    def set_guide(self, gradients: dict[str, Tensor]) -> None:
        """Store the current surrogate gradient (rank-ρ) and rebuild the subspace of the last ``k``."""
        self.history.append({s.name: truncate(gradients[s.name].detach(), self.grad_rank) for s in self.specs})
        self.history = self.history[-self.k:]
        self.subspace = build_subspace(self.history, self.dim)

    def _coefficients(self, population: Population, pairs: Tensor) -> Tensor:
        """``c_j = V Λ^{-1/2} eps'_j`` of the given pairs, ``[J, K]`` (eps' from the counters of GUIDE_ID)."""
        sub = self.subspace
        keys = pair_keys(base_key(population.seed, population.epoch, GUIDE_ID), pairs.cpu())
        eps = standard_normal(keys, sub.k, dtype=torch.float64)  # [J, k]
        return eps @ sub.coef.T  # [J, K], float64 on the CPU

    def member_factors(self, population: Population, name: str, pairs: range | Tensor,
                       isotropic: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """The factors ``(Ã [J, m, R], B̃ [J, n, R])`` of the total noise ``Z_j = Ã_j B̃_jᵀ / sqrt(R)`` on
        matrix ``name`` for ``pairs``; at alpha = 1 (or with no guide) the engine's own factors. ``isotropic``:
        the engine's ``(A, B)`` of these pairs when already generated."""
        A, B = population.factors(name, pairs) if isotropic is None else isotropic
        if not self.guided:
            return A, B
        sub, r = self.subspace, A.shape[-1]
        P, Q = sub.factors[name]  # [K, m, ρ], [K, n, ρ]
        K, _, rho = P.shape
        R = r + K * rho
        gamma = math.sqrt((1 - self.alpha) * sub.dim / sub.k)
        c = self._coefficients(population, population._pairs(pairs)).to(A)  # [J, K]
        guided_a = torch.einsum("jk,kmr->jmkr", c, P.to(A.dtype)).reshape(A.shape[0], -1, K * rho)
        guided_b = Q.to(B.dtype).permute(1, 0, 2).reshape(1, -1, K * rho).expand(B.shape[0], -1, -1)
        A_total = torch.cat((math.sqrt(self.alpha * R / r) * A, (gamma * math.sqrt(R)) * guided_a), dim=-1)
        return A_total, torch.cat((B, guided_b), dim=-1)

    def gradient(self, population: Population, shaped: Tensor) -> dict[str, Tensor]:
        """The paper's estimator ``g = β/(N sigma) Σ_j d_j Z_j`` (module docstring), ``shaped [N]``."""
        iso = es_gradient(population, shaped, pair_chunk=self.pair_chunk)
        grads = {name: (self.beta * math.sqrt(self.alpha)) * g for name, g in iso.items()}
        if not self.guided:
            return grads
        sub = self.subspace
        d = antithetic_differences(shaped)  # [J]
        weights = d.double().cpu() @ self._coefficients(population, torch.arange(population.num_pairs))  # [K]
        scale = self.beta * math.sqrt((1 - self.alpha) * sub.dim / sub.k) / (population.num_members * population.sigma)
        for spec in self.specs:
            grads[spec.name] = grads[spec.name] + (scale * sub.gradient(spec.name, weights)).reshape(spec.shape).to(
                grads[spec.name].dtype)
        return grads

    def state_dict(self) -> dict:
        """The engine's state plus the stored gradients (the subspace is rebuilt from them)."""
        state = super().state_dict()
        state["guide_history"] = [{name: list(pq) for name, pq in h.items()} for h in self.history]
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.history = [{name: (pq[0], pq[1]) for name, pq in h.items()} for h in state.get("guide_history", [])]
        device = next(iter(self.params.values())).device
        self.history = [{n: (p.to(device), q.to(device)) for n, (p, q) in h.items()} for h in self.history]
        self.subspace = build_subspace(self.history, self.dim) if self.history else None
