"""Retrieval heads on frozen embeddings, and the pool scores every method optimizes.

A head f maps an L2-normalized encoder embedding h [..., n] to f(h) [..., m]. The score of document d for
query q is the bilinear form

    s(q, d) = f(h_q) · f(h_d)                          (normalize=False, dot product)
    s(q, d) = f(h_q)/|f(h_q)| · f(h_d)/|f(h_d)|        (normalize=True, cosine)

Every head starts at (or near) the zero-shot encoder: step 0 of training evaluates the encoder itself.

**Closed-form noise.** A head whose output is f(h) = W h for an effective weight W may describe how engine
noise on its own parameters maps to low-rank noise on W: ``weight_noise(factors) -> (A [J, m, r], B [J, n, r])``
with ``factors(name) -> (A_p, B_p)`` the engine's factors of parameter ``name``, such that parameter noise
c·A_p B_pᵀ is exactly the noise c·A Bᵀ on W (``None`` when it is not, e.g. with a bias). The ES method then
scores the whole population with the exact closed form of the bilinear score (``es.perturb``), never forming
a member's weights. A head without ``weight_noise`` (the residual MLP) runs its ``nn.Linear`` layers as a
population through the engine's hooks.

**Registry.** ``HEADS`` maps a config name to a ``HeadSpec``: ``build(doc_emb [D, n], settings)`` and the
settings it reads. A new head is one class plus one ``HEADS.register`` line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import Registry

__all__ = ["HEADS", "AdapterHead", "ClosedFormHead", "HeadSettings", "HeadSpec", "LinearHead", "MLPHead",
           "SubspaceHead", "build_head", "principal_basis", "score_pool"]

LinearInit = Literal["identity", "orthogonal", "random"]
NoiseFactors = Callable[[str], "tuple[Tensor, Tensor]"]


class ClosedFormHead(Protocol):
    """A head f(h) = W h that maps engine noise on its parameters to low-rank noise on W (module docstring)."""

    weight: Tensor

    def weight_noise(self, factors: NoiseFactors) -> tuple[Tensor, Tensor] | None: ...


class LinearHead(nn.Module):
    """f(h) = W h (+ b), with ``weight`` W [out_dim, in_dim] held by ``self.linear`` (an ``nn.Linear``).

    Args:
        in_dim: n, the encoder dimension.
        out_dim: m, the head output dimension.
        init: "identity": W = the [m, n] identity (``torch.eye(m, n)``). For m == n, f(h) = h, so step 0
            reproduces the zero-shot scores exactly. For m > n, W = [I; 0] also keeps every score exactly.
            For m < n, W = [I | 0] is a row-orthonormal projection onto the first m coordinates: it is then
            NOT exactly zero-shot (scores use only those m coordinates).
            "orthogonal": a random (semi-)orthogonal W (``nn.init.orthogonal_``), norm-preserving when m >= n.
            "random": W_ij ~ N(0, 1/n), so E|W h|^2 = (m/n)|h|^2.
        bias: add a learnable bias b [m], initialized to 0.
        generator: random source for the "orthogonal" and "random" inits (deterministic heads).
    """

    def __init__(self, in_dim: int, out_dim: int, *, init: LinearInit = "identity", bias: bool = False,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim, bias=bias)
        with torch.no_grad():
            if init == "identity":
                self.linear.weight.copy_(torch.eye(out_dim, in_dim))
            elif init == "orthogonal":
                nn.init.orthogonal_(self.linear.weight, generator=generator)
            elif init == "random":
                nn.init.normal_(self.linear.weight, std=in_dim ** -0.5, generator=generator)
            else:
                raise ValueError(f"init must be 'identity', 'orthogonal' or 'random', got {init!r}")
            if bias:
                self.linear.bias.zero_()

    @property
    def weight(self) -> Tensor:
        """W [out_dim, in_dim]."""
        return self.linear.weight

    @property
    def bias(self) -> Tensor | None:
        """b [out_dim], or None without bias."""
        return self.linear.bias

    def forward(self, h: Tensor) -> Tensor:
        """[..., in_dim] -> [..., out_dim]."""
        return self.linear(h)

    def weight_noise(self, factors: NoiseFactors) -> tuple[Tensor, Tensor] | None:
        """Noise on ``linear.weight`` is noise on W; with a bias the score has no bilinear closed form."""
        return factors("linear.weight") if self.bias is None else None


class MLPHead(nn.Module):
    """Residual MLP f(h) = h + W2 gelu(W1 h + b1) + b2, with W1 [hidden, n] and W2 [n, hidden] (``nn.Linear``).

    W2 and b2 start at zero, so f(h) = h at step 0 (exactly the zero-shot scores); W1 keeps the default
    ``nn.Linear`` init (drawn from ``generator``). Note that at step 0 the gradient of any loss with respect
    to W1 is zero (W2 = 0), so W1 only starts to move once W2 has. The residual form needs out_dim == in_dim.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int | None = None, *, bias: bool = True,
                 generator: torch.Generator | None = None):
        super().__init__()
        if out_dim is not None and out_dim != in_dim:
            raise ValueError(f"the residual MLP head keeps the dimension: out_dim must be {in_dim}, got {out_dim}")
        self.up = nn.Linear(in_dim, hidden, bias=bias)
        self.down = nn.Linear(hidden, in_dim, bias=bias)
        with torch.no_grad():
            bound = in_dim ** -0.5  # nn.Linear's default U(-1/sqrt(n), 1/sqrt(n)), but from `generator`
            self.up.weight.uniform_(-bound, bound, generator=generator)
            if bias:
                self.up.bias.uniform_(-bound, bound, generator=generator)
                self.down.bias.zero_()
            self.down.weight.zero_()

    def forward(self, h: Tensor) -> Tensor:
        """[..., in_dim] -> [..., in_dim]."""
        return h + self.down(F.gelu(self.up(h)))


def _frozen_basis(basis: Tensor) -> Tensor:
    """A detached copy of a basis [n, k] (k <= n), kept as a buffer by the subspace and adapter heads."""
    if basis.dim() != 2 or basis.shape[1] > basis.shape[0]:
        raise ValueError(f"basis must be [n, k] with k <= n, got {tuple(basis.shape)}")
    return basis.detach().clone()


class SubspaceHead(nn.Module):
    """f(h) = W h with W = I + P M Pᵀ: a learned k x k matrix M (``core``, zero at the start) acting inside a
    fixed k-dimensional subspace with orthonormal basis P [n, k] (a buffer, saved with the head).

    Step 0 is exactly the zero-shot encoder. The head has k² parameters instead of n², which is what
    evolution strategies need: the ES gradient's signal-to-noise ratio falls with the number of parameters.
    A rank-r perturbation of M, M + c A Bᵀ, is the rank-r perturbation W + c (P A)(P B)ᵀ of W, so the exact
    closed-form population scores of a linear head apply unchanged. `principal_basis` gives a data-driven P.
    """

    def __init__(self, basis: Tensor):
        super().__init__()
        self.register_buffer("basis", _frozen_basis(basis))
        self.core = nn.Parameter(torch.zeros(basis.shape[1], basis.shape[1], dtype=basis.dtype))

    @property
    def weight(self) -> Tensor:
        """W = I + P M Pᵀ, [n, n]."""
        return torch.eye(self.basis.shape[0], dtype=self.basis.dtype, device=self.basis.device) + (
            self.basis @ self.core @ self.basis.T
        )

    def forward(self, h: Tensor) -> Tensor:
        """[..., n] -> [..., n]: h + ((h P) Mᵀ) Pᵀ."""
        return h + (h @ self.basis) @ self.core.T @ self.basis.T

    def weight_noise(self, factors: NoiseFactors) -> tuple[Tensor, Tensor]:
        """M + c A Bᵀ is W + c (P A)(P B)ᵀ: factors [J, n, r] from the core's [J, k, r]."""
        A, B = factors("core")
        return self.basis @ A, self.basis @ B


class AdapterHead(nn.Module):
    """f(h) = W h with W = I + U Pᵀ: a low-rank adapter whose down-projection is a fixed orthonormal basis
    P [n, k] (a buffer, saved with the head; frozen as in LoRA-FA) and whose up-projection U [n, k] (``up``,
    zero at the start) is learned: n·k parameters, any direction of the output space, read from k input
    directions.

    Step 0 is exactly the zero-shot encoder. A rank-r perturbation of U, U + c A Bᵀ (A [n, r], B [k, r]), is
    the rank-r perturbation W + c A (P B)ᵀ of W, so the exact closed-form population scores of a linear head
    apply unchanged. (Learning P as well would add a second-order term σ² E_U E_Pᵀ shared by both members of a
    pair, which the closed form does not cover; hence the frozen down-projection.)
    """

    def __init__(self, basis: Tensor):
        super().__init__()
        self.register_buffer("basis", _frozen_basis(basis))
        self.up = nn.Parameter(torch.zeros(basis.shape[0], basis.shape[1], dtype=basis.dtype))

    @property
    def weight(self) -> Tensor:
        """W = I + U Pᵀ, [n, n]."""
        return torch.eye(self.basis.shape[0], dtype=self.basis.dtype, device=self.basis.device) + self.up @ self.basis.T

    def forward(self, h: Tensor) -> Tensor:
        """[..., n] -> [..., n]: h + (h P) Uᵀ."""
        return h + (h @ self.basis) @ self.up.T

    def weight_noise(self, factors: NoiseFactors) -> tuple[Tensor, Tensor]:
        """U + c A Bᵀ is W + c A (P B)ᵀ: A [J, n, r] as is, B [J, n, r] from [J, k, r]."""
        A, B = factors("up")
        return A, self.basis @ B


def principal_basis(embeddings: Tensor, k: int) -> Tensor:
    """The top-k right singular vectors of the centered embeddings [N, n] -> [n, k] (orthonormal columns),
    with each column's sign fixed so that its largest-magnitude entry is positive (deterministic)."""
    centered = embeddings.double() - embeddings.double().mean(dim=0, keepdim=True)
    _, eigenvectors = torch.linalg.eigh(centered.T @ centered)  # ascending eigenvalues
    basis = eigenvectors[:, -k:].flip(1)
    signs = torch.sign(basis.gather(0, basis.abs().argmax(dim=0, keepdim=True)))
    return (basis * signs).to(embeddings.dtype)


@dataclass(frozen=True)
class HeadSettings:
    """The config settings a head builder may read: ``out_dim`` (None: the encoder's dimension), the MLP's
    ``hidden`` width, and the basis size ``subspace_dim`` of the subspace and adapter heads."""

    out_dim: int | None = None
    hidden: int = 512
    subspace_dim: int = 32


@dataclass(frozen=True)
class HeadSpec:
    """A registered head: ``build(doc_emb [D, n], settings) -> nn.Module`` (on doc_emb's device and dtype)
    and the names of the ``HeadSettings`` fields it reads (a config that sets another one is refused)."""

    build: Callable[[Tensor, HeadSettings], nn.Module]
    reads: tuple[str, ...] = ()


def _basis_head(cls: type[nn.Module]) -> Callable[[Tensor, HeadSettings], nn.Module]:
    """Builder of a head on the top principal directions of the corpus embeddings (no label is read)."""
    return lambda doc_emb, settings: cls(principal_basis(doc_emb, settings.subspace_dim))


HEADS: Registry[HeadSpec] = Registry("head")
HEADS.register("linear", HeadSpec(lambda e, s: LinearHead(e.shape[1], s.out_dim or e.shape[1]), reads=("out_dim",)))
HEADS.register("mlp", HeadSpec(lambda e, s: MLPHead(e.shape[1], s.hidden), reads=("hidden",)))
HEADS.register("subspace", HeadSpec(_basis_head(SubspaceHead), reads=("subspace_dim",)))
HEADS.register("adapter", HeadSpec(_basis_head(AdapterHead), reads=("subspace_dim",)))


def build_head(kind: str, doc_emb: Tensor, settings: HeadSettings = HeadSettings()) -> nn.Module:
    """The registered head ``kind`` for the corpus embeddings ``doc_emb`` [D, n], on their device."""
    module = HEADS.get(kind).build(doc_emb, settings)
    return module.to(device=doc_emb.device)


def score_pool(head: nn.Module, query_emb: Tensor, doc_emb: Tensor, *, normalize: bool) -> Tensor:
    """Scores of each query's candidate pool: s[q, p] = f(h_q) · f(h_{q,p}) (cosine when ``normalize``).

    Args:
        head: f, any module mapping [..., n] -> [..., m].
        query_emb: [Q, n] query embeddings.
        doc_emb: [Q, P, n] candidate embeddings of each query's pool.
        normalize: L2-normalize both head outputs before the dot product.

    Returns:
        [Q, P] scores (padding candidates get a score too; the caller's mask hides them).
    """
    q = head(query_emb)
    d = head(doc_emb)
    if normalize:
        q = F.normalize(q, dim=-1)
        d = F.normalize(d, dim=-1)
    return torch.einsum("qm,qpm->qp", q, d)
