"""Query-level, seeded train / val / test splits (the trainer saves one with every run).

Rules (`make_splits`):

- Only *eligible* queries are split: a non-empty text and at least one judged document with grade >= 1
  (a query with no relevant document has NDCG 0 whatever the model does: no signal, no information).
- Given splits are respected. The qrels split names are read from `Collection.split_queries`; `all` is ignored
  when other splits exist (it is their union, as in squad).
  - train, val and test given (`val`, `validation` or `dev`): used as they are;
  - train and test given: test untouched, val = a seeded `val_fraction` of train;
  - anything else (a single labelled split, as in trec_dl19, autorag, belebele): the eligible queries are
    pooled, then either k-fold (`n_folds` and `fold` given: test = that fold, val = a seeded `val_fraction` of
    the other folds) or a seeded split by `val_fraction` / `test_fraction`.
- Every split is a sorted tuple, and no query is in two splits (checked on construction).
- A given split that is used but holds no eligible query (all its qrels rows name unknown or empty-text
  queries), or a collection with no eligible query at all, is refused with `DataError`: it would be
  evaluated as 0 queries. `split_query_ids` does the same check for evaluating one qrels split as it is.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from .beir import Collection, DataError

__all__ = ["QuerySplits", "make_splits", "eligible_queries", "split_query_ids"]

VAL_NAMES = ("val", "validation", "dev")


@dataclass(frozen=True)
class QuerySplits:
    """Disjoint train / val / test query ids and a sentence on how they were made."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    description: str
    collection: str = ""

    def __post_init__(self) -> None:
        for field in ("train", "val", "test"):
            object.__setattr__(self, field, tuple(getattr(self, field)))
        seen: dict[str, str] = {}
        for field in ("train", "val", "test"):
            for query_id in getattr(self, field):
                if query_id in seen:
                    raise ValueError(f"query {query_id!r} is in both {seen[query_id]} and {field}")
                seen[query_id] = field

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "QuerySplits":
        data = json.loads(text)
        return cls(
            train=tuple(data["train"]),
            val=tuple(data["val"]),
            test=tuple(data["test"]),
            description=data["description"],
            collection=data.get("collection", ""),
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "QuerySplits":
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


def eligible_queries(collection: Collection) -> set[str]:
    """Queries that can be trained or evaluated on: with text and at least one judgment of grade >= 1."""
    return {
        query_id
        for query_id, docs in collection.judgments.items()
        if collection.query_texts.get(query_id, "").strip() and any(grade >= 1 for grade in docs.values())
    }


def split_query_ids(collection: Collection, split: str) -> tuple[str, ...]:
    """The queries of the qrels split `split` (to evaluate it as it is); `DataError` when it is unknown or empty.

    `Collection.split_queries` holds only queries with text that some row of the split judges; a split whose
    rows all name unknown or empty-text queries is kept there empty (and reported in `problems`), so that a
    caller can refuse it here instead of scoring 0 queries.
    """
    if split not in collection.split_queries:
        known = ", ".join(sorted(collection.split_queries)) or "none"
        raise DataError(f"{collection.name}/qrels/{split}.tsv: no such qrels split (the collection has: {known})")
    ids = collection.split_queries[split]
    if not ids:
        raise DataError(
            f"{collection.name}/qrels/{split}.tsv: split {split!r} has no query with text "
            f"(its rows name only unknown or empty-text queries); nothing to evaluate"
        )
    return ids


def _require_queries(name: str, split: str, ids: list[str]) -> list[str]:
    """`ids`, or `DataError` when a split that will be used has no eligible query."""
    if not ids:
        raise DataError(
            f"{name}: split {split!r} has no eligible query (with text and a judgment >= 1); "
            f"it would be evaluated as 0 queries"
        )
    return ids


def _carve(ids: list[str], fraction: float, rng: random.Random) -> tuple[list[str], list[str]]:
    """Split sorted `ids` into (rest, carved) with round(fraction * len) carved at random."""
    shuffled = sorted(ids)
    rng.shuffle(shuffled)
    count = round(fraction * len(shuffled))
    return sorted(shuffled[count:]), sorted(shuffled[:count])


def _check_options(val_fraction: float, test_fraction: float, n_folds: int | None, fold: int | None) -> None:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"need 0 <= val_fraction, test_fraction and a sum < 1, got {val_fraction}, {test_fraction}")
    if (n_folds is None) != (fold is None):
        raise ValueError("give n_folds and fold together (or neither)")
    if n_folds is not None and fold is not None and not (n_folds >= 2 and 0 <= fold < n_folds):
        raise ValueError(f"need n_folds >= 2 and 0 <= fold < n_folds, got n_folds={n_folds}, fold={fold}")


def make_splits(
    collection: Collection,
    *,
    seed: int,
    val_fraction: float = 0.2,
    test_fraction: float = 0.3,
    n_folds: int | None = None,
    fold: int | None = None,
) -> QuerySplits:
    """Query-level train / val / test splits of `collection` (rules in the module docstring).

    Example:
        >>> splits = make_splits(resolve("scifact"), seed=0)      # doctest: +SKIP
        >>> splits.sizes()                                          # doctest: +SKIP
        {'train': 647, 'val': 162, 'test': 300}
    """
    _check_options(val_fraction, test_fraction, n_folds, fold)
    eligible = eligible_queries(collection)
    given = {name: ids for name, ids in collection.split_queries.items()}
    if len(given) > 1:
        given.pop("all", None)
    val_name = next((name for name in VAL_NAMES if name in given), None)
    name = collection.name

    def keep(split: str) -> list[str]:
        return _require_queries(name, split, sorted(set(given[split]) & eligible))

    if "train" in given and "test" in given:
        if n_folds is not None:
            raise ValueError(f"{name} has given train/test splits; k-fold is for collections with one labelled split")
        test = keep("test")
        if val_name is not None:
            train, val = keep("train"), keep(val_name)
            how = f"given qrels splits train/{val_name}/test, used as they are"
        else:
            train, val = _carve(keep("train"), val_fraction, random.Random(f"eggroll-ndcg/val/{seed}"))
            how = f"given qrels splits train/test; test untouched, val = {val_fraction:g} of train (seed {seed})"
        overlap = (set(train) & set(test)) | (set(train) & set(val)) | (set(val) & set(test))
        if overlap:
            raise ValueError(f"{name}: the given splits share {len(overlap)} queries, e.g. {sorted(overlap)[:3]}")
    else:
        pool = _require_queries(name, "/".join(sorted(given)) or "all", sorted(eligible))
        labelled = "/".join(sorted(given)) or "none"
        if n_folds is not None and fold is not None:
            shuffled = list(pool)
            random.Random(f"eggroll-ndcg/folds/{seed}").shuffle(shuffled)
            bounds = [round(k * len(shuffled) / n_folds) for k in range(n_folds + 1)]
            test = sorted(shuffled[bounds[fold] : bounds[fold + 1]])
            rest = sorted(set(pool) - set(test))
            train, val = _carve(rest, val_fraction, random.Random(f"eggroll-ndcg/val/{seed}/fold{fold}"))
            how = (
                f"labelled split(s) {labelled}; {n_folds}-fold over queries (seed {seed}), test = fold {fold}, "
                f"val = {val_fraction:g} of the other folds"
            )
        else:
            rng = random.Random(f"eggroll-ndcg/split/{seed}")
            shuffled = list(pool)
            rng.shuffle(shuffled)
            n_test, n_val = round(test_fraction * len(pool)), round(val_fraction * len(pool))
            test = sorted(shuffled[:n_test])
            val = sorted(shuffled[n_test : n_test + n_val])
            train = sorted(shuffled[n_test + n_val :])
            how = (
                f"labelled split(s) {labelled}; seeded query split (seed {seed}): "
                f"test {test_fraction:g}, val {val_fraction:g}, train the rest"
            )
    description = (
        f"{name}: {how}; eligible queries (text and a judgment >= 1): {len(eligible)}; "
        f"train {len(train)}, val {len(val)}, test {len(test)}"
    )
    return QuerySplits(tuple(train), tuple(val), tuple(test), description, name)
