"""Everything a run needs before its first step: collection, splits, cached embeddings, training pools.

All methods of a comparison share one `PreparedData`, so they see the same splits, embeddings and pools.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import torch

from ..data.beir import Collection
from ..data.pools import CandidatePools, build_pools, drop_documents
from ..data.soft_labels import training_judgments
from ..data.sources import resolve
from ..data.splits import QuerySplits, make_splits
from ..encoders import load_encoder
from ..encoders.cache import encode_collection as encode_labelled_collection
from .config import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class EncodedCollection:
    """A collection with cached embeddings: `doc_emb` [D, n] in `collection.doc_ids` order, and `query_emb`
    [Q, n] for the queries in `query_row` (query id -> row)."""

    collection: Collection
    query_row: dict[str, int]
    query_emb: torch.Tensor
    doc_emb: torch.Tensor


def encode_collection(
    collection: Collection, encoder_name: str, *, device: str = "cpu", progress: bool = True
) -> EncodedCollection:
    """Encode (through the embedding cache) the corpus and every labelled query, in the canonical order that
    `eggroll-ndcg encode` uses too, so training and evaluation hit the same cache entries."""
    encoder = load_encoder(encoder_name, device=device)
    log.info("embedding %s with %s (served from the cache when already encoded)", collection.name, encoder.name)
    embeddings = encode_labelled_collection(encoder, collection, progress=progress)
    return EncodedCollection(
        collection=collection, query_row={qid: row for row, qid in enumerate(embeddings.query_ids)},
        query_emb=embeddings.query_emb.to(device), doc_emb=embeddings.doc_emb.to(device),
    )


@dataclass
class PreparedData(EncodedCollection):
    """The frozen inputs of training and evaluation: the encoded collection (queries of all three splits),
    the splits, and the candidate pools of the training queries. `train_positive_docs` are the documents
    judged relevant (grade >= 1) for some training query: a test query is a "seen-document" query when one
    of its relevant documents is among them.
    """

    splits: QuerySplits
    train_pools: CandidatePools
    train_positive_docs: frozenset[str]

    def queries(self, split: str) -> tuple[str, ...]:
        return tuple(getattr(self.splits, split))

    def validation_queries(self, which: str = "all") -> tuple[str, ...]:
        """The validation queries model selection reads: "all", or "unseen-documents" (those with no relevant
        document among the training positives, like the unseen-document test group)."""
        val_ids = self.queries("val")
        if which == "all":
            return val_ids
        if which == "unseen-documents":
            seen = set(self.seen_document_queries(val_ids))
            return tuple(qid for qid in val_ids if qid not in seen)
        raise ValueError(f"unknown validation subset {which!r}")

    def seen_document_queries(self, query_ids: tuple[str, ...]) -> tuple[str, ...]:
        """The queries with a relevant document that was a positive of some training query."""
        judged = self.collection.judgments
        return tuple(
            qid for qid in query_ids
            if any(grade >= 1 and doc in self.train_positive_docs for doc, grade in judged.get(qid, {}).items())
        )


def data_key(config: TrainConfig) -> tuple:
    """The config fields that determine `PreparedData`; runs that agree on them can share it."""
    return (
        config.task, config.data_dir, config.encoder, config.split_seed, config.val_fraction, config.test_fraction,
        config.n_folds, config.fold, config.pool_size, config.bm25_negatives, config.random_negatives,
        config.insert_positives, config.ignore_identical_ids, config.device, config.train_qrels, config.pool_denoise,
    )


def prepare_data(
    config: TrainConfig, *, encoded: EncodedCollection | None = None, progress: bool = True
) -> PreparedData:
    """Resolve the collection, split its queries, encode (cached) and build the training pools.

    `encoded` supplies embeddings made elsewhere (its collection is used as is); by default the collection
    is resolved from `config.task` and encoded with `config.encoder`.
    """
    if encoded is None:
        collection = resolve(config.task, data_dir=config.data_dir)
        encoded = encode_collection(collection, config.encoder, device=config.device, progress=progress)
    collection = encoded.collection
    splits = make_splits(
        collection, seed=config.split_seed, val_fraction=config.val_fraction,
        test_fraction=config.test_fraction, n_folds=config.n_folds, fold=config.fold,
    )
    train_ids = tuple(splits.train)
    train_rows = torch.tensor([encoded.query_row[qid] for qid in train_ids], device=encoded.query_emb.device)
    # the training queries' judgments only (train_qrels replaces them): val/test keep the original ones
    train_judged, dropped = training_judgments(collection.judgments, train_ids, config.train_qrels,
                                               pool_denoise=config.pool_denoise)
    pools = build_pools(
        dataclasses.replace(collection, judgments=train_judged), train_ids, encoded.query_emb[train_rows],
        encoded.doc_emb,
        size=config.pool_size, bm25_negatives=config.bm25_negatives,
        random_negatives=config.random_negatives, insert_positives=config.insert_positives, seed=config.split_seed,
        ignore_identical_ids=config.ignore_identical_ids,
    )
    pools = drop_documents(pools, collection.doc_ids, dropped) if dropped else pools
    positives = frozenset(
        doc for qid in train_ids for doc, grade in train_judged.get(qid, {}).items() if grade >= 1
    )
    return PreparedData(
        collection=collection, query_row=encoded.query_row, query_emb=encoded.query_emb, doc_emb=encoded.doc_emb,
        splits=splits, train_pools=pools.to(encoded.doc_emb.device), train_positive_docs=positives,
    )
