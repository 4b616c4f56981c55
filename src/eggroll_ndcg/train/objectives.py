"""The objective a run optimizes: one object used by every method.

An objective is named `METRIC@K` ("ndcg@10", "mrr@10", "recall@100", "map@100"; linear gain, trec_eval's
definitions, see `metrics.ranking`). The ES fitness, the Plackett-Luce policy-gradient reward, the cutoff of
LambdaLoss and the logged batch fitness all call the same `Objective`, so `objective: mrr@10` changes what
every method optimizes, and a method that cannot target a metric refuses the config (see `train.methods`).

`OBJECTIVES` maps a metric family to a factory `k -> Objective`; a new objective (diversity, exposure) is
one factory plus one `OBJECTIVES.register` line. An objective is called on pool scores:

    objective(scores [..., B, P], batch) -> [..., B]   (higher is better; leading dims: members or samples)

with `batch` the `PoolBatch` the scores belong to (grades, mask, ideal grades; an objective may read more of
it, such as the candidates' embeddings).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor

from ..metrics.ranking import ranking_metrics
from ..registry import Registry, UnknownNameError
from .batches import PoolBatch


@dataclass(frozen=True)
class Objective:
    """A per-query quality of a ranking at cutoff `k`: `measure` is the metric family ("ndcg")."""

    measure: str
    k: int
    score: Callable[[Tensor, PoolBatch, int], Tensor]

    @property
    def name(self) -> str:
        return f"{self.measure}@{self.k}"

    def __call__(self, scores: Tensor, batch: PoolBatch) -> Tensor:
        return self.score(scores, batch, self.k)


def _trec_measure(measure: str) -> Callable[[int], Objective]:
    """The factory of a `metrics.ranking` measure: exact metric@k with the tie rule of the pools."""

    def score(scores: Tensor, batch: PoolBatch, k: int) -> Tensor:
        return ranking_metrics(scores, batch.grades, ks=[k], ideal_grades=batch.ideal_grades, mask=batch.mask,
                               measures=(measure,))[measure][..., 0]

    return lambda k: Objective(measure, k, score)


OBJECTIVES: Registry[Callable[[int], Objective]] = Registry("objective")
for _measure in ("ndcg", "mrr", "recall", "map"):
    OBJECTIVES.register(_measure, _trec_measure(_measure))


def parse_objective(text: str) -> Objective:
    """"ndcg@10" -> the registered objective at k = 10; a weighted sum such as "ndcg@10+0.5*diversity@10"
    -> `set_objectives.parse_set_objective`; `ValueError` with the choices otherwise."""
    if "+" in str(text) or "*" in str(text):
        from .set_objectives import parse_set_objective  # imports this module: resolved at call time

        return parse_set_objective(str(text))
    measure, sep, k = str(text).partition("@")
    if not sep or not k.isdigit() or int(k) < 1:
        raise ValueError(f"expected METRIC@K such as 'ndcg@10' (metrics: {', '.join(OBJECTIVES.names())}), got {text!r}")
    try:
        return OBJECTIVES.get(measure)(int(k))
    except UnknownNameError as error:
        raise ValueError(str(error)) from None
