"""Document groups: one integer group id per corpus document, for diversity and exposure objectives.

A grouping is a LongTensor `groups` [D] aligned with `Collection.doc_ids` (ids 0..G-1). The groups that exist
in the data at hand:

- `article`        SQuAD: the Wikipedia article of a paragraph. Corpus ids are "<article>-<paragraph>"
                   (see squad_v1_dev_retrieval/SOURCE.md); the group is the part before the last "-".
- `package`        stdlib-code: the top-level package of a function, from its id "module.sub:qualname".
- `train_positive` every collection: 1 when the document was judged relevant (grade >= 1) for some training
                   query, else 0: the "document prior" a gradient head learns.
- `kmeans`         every collection: k-means topic clusters of the frozen base embeddings (cosine, Lloyd's
                   algorithm from k-means++ seeds drawn by a seeded generator; deterministic).

`GROUPINGS` maps a name to `(collection, doc_emb, train_query_ids) -> groups`; `document_groups` resolves a
name and fails with the choices for an unknown one, and with a `DataError` when a collection's ids do not
carry the label (e.g. `article` on SciFact).
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import Tensor

from ..registry import Registry
from .beir import Collection, DataError

KMEANS_CLUSTERS = 20
KMEANS_ITERATIONS = 25


def _index(labels: list[str]) -> Tensor:
    """Labels -> ids 0..G-1 in order of first appearance."""
    ids: dict[str, int] = {}
    return torch.tensor([ids.setdefault(label, len(ids)) for label in labels], dtype=torch.long)


def article_groups(collection: Collection) -> Tensor:
    """SQuAD article of each paragraph: doc id "12-3" -> article "12"."""
    bad = [doc for doc in collection.doc_ids if "-" not in doc]
    if bad:
        raise DataError(f"{collection.name}: doc id {bad[0]!r} is not '<article>-<paragraph>'; the 'article' "
                        "grouping needs SQuAD-style ids")
    return _index([doc.rsplit("-", 1)[0] for doc in collection.doc_ids])


def package_groups(collection: Collection) -> Tensor:
    """Top-level stdlib package of each function: "email.utils:parseaddr" -> "email"."""
    bad = [doc for doc in collection.doc_ids if ":" not in doc]
    if bad:
        raise DataError(f"{collection.name}: doc id {bad[0]!r} is not 'module:qualname'; the 'package' grouping "
                        "needs stdlib-code ids")
    return _index([doc.split(":", 1)[0].split(".", 1)[0] for doc in collection.doc_ids])


def train_positive_groups(collection: Collection, train_query_ids: Iterable[str]) -> Tensor:
    """1 for a document judged relevant (grade >= 1) to some training query, 0 for every other document."""
    positives = {doc for qid in train_query_ids for doc, grade in collection.judgments.get(qid, {}).items()
                 if grade >= 1}
    return torch.tensor([int(doc in positives) for doc in collection.doc_ids], dtype=torch.long)


def kmeans_groups(doc_emb: Tensor, clusters: int = KMEANS_CLUSTERS, *, seed: int = 0,
                  iterations: int = KMEANS_ITERATIONS) -> Tensor:
    """Spherical k-means of the unit-normalized embeddings `doc_emb` [D, n] -> cluster ids [D].

    Seeds by k-means++ (the next centre drawn with probability proportional to 1 - max cosine to the chosen
    centres), then `iterations` Lloyd steps: assign x to argmax_c cos(x, mu_c), mu_c <- normalize(mean of its
    points) (an empty cluster keeps its centre). Deterministic for a seed; ties go to the lower cluster.
    """
    x = torch.nn.functional.normalize(doc_emb.double().cpu(), dim=-1)
    clusters = min(clusters, x.shape[0])
    generator = torch.Generator().manual_seed(seed)
    chosen = [int(torch.randint(x.shape[0], (1,), generator=generator))]
    distance = 1 - x @ x[chosen[0]]
    for _ in range(1, clusters):
        weights = distance.clamp(min=0)
        pick = int(torch.multinomial(weights, 1, generator=generator)) if weights.sum() > 0 else len(chosen)
        chosen.append(pick)
        distance = torch.minimum(distance, 1 - x @ x[pick])
    centres = x[chosen].clone()
    assign = torch.zeros(x.shape[0], dtype=torch.long)
    for _ in range(iterations):
        assign = (x @ centres.T).argmax(dim=1)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=clusters)
        centres = torch.where(counts[:, None] > 0, torch.nn.functional.normalize(sums, dim=-1), centres)
    return assign.to(doc_emb.device)


Grouping = Callable[[Collection, Tensor, tuple[str, ...]], Tensor]
GROUPINGS: Registry[Grouping] = Registry("grouping")
GROUPINGS.register("article", lambda c, emb, train: article_groups(c))
GROUPINGS.register("package", lambda c, emb, train: package_groups(c))
GROUPINGS.register("train_positive", lambda c, emb, train: train_positive_groups(c, train))
GROUPINGS.register("kmeans", lambda c, emb, train: kmeans_groups(emb))


def document_groups(name: str, collection: Collection, doc_emb: Tensor, train_query_ids: Iterable[str]) -> Tensor:
    """The grouping `name` (see `GROUPINGS`) of `collection`: LongTensor [D] on `doc_emb`'s device."""
    return GROUPINGS.get(name)(collection, doc_emb, tuple(train_query_ids)).to(doc_emb.device)
