"""A small, exact Okapi BM25 over a corpus (scipy sparse), used for lexical negatives in candidate pools.

Tokens: lower-cased `\\w+` runs (Unicode-aware, so Korean words split on spaces and punctuation); no stemming,
no stop words (idf already discounts frequent words). Scoring (Lucene's BM25, as in `bm25s` "lucene"):

    score(q, d) = sum over distinct query terms t in d of  idf(t) * tf(t,d) * (k1 + 1) / (tf(t,d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t) = log(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

Ties rank the larger doc id first (the project's tie rule) when `doc_ids` are given, else the lower index.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

import numpy as np
from scipy import sparse

_TOKEN = re.compile(r"\w+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens of `text`."""
    return _TOKEN.findall(text.lower())


class BM25Index:
    """Okapi BM25 over `doc_texts` [D]. `scores(queries)` -> [Q, D]; `search(queries, k)` -> top-k."""

    def __init__(self, doc_texts: Sequence[str], *, k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.vocab: dict[str, int] = {}
        rows, cols, tfs, lengths = [], [], [], []
        for row, text in enumerate(doc_texts):
            tokens = tokenize(text)
            lengths.append(len(tokens))
            for term, tf in Counter(tokens).items():
                rows.append(row)
                cols.append(self.vocab.setdefault(term, len(self.vocab)))
                tfs.append(tf)
        n_docs = len(doc_texts)
        lengths_arr = np.asarray(lengths, dtype=np.float64)
        avgdl = max(lengths_arr.mean() if n_docs else 0.0, 1e-9)
        tf = np.asarray(tfs, dtype=np.float64)
        rows_arr = np.asarray(rows, dtype=np.int64)
        cols_arr = np.asarray(cols, dtype=np.int64)
        df = np.bincount(cols_arr, minlength=len(self.vocab)).astype(np.float64)
        idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
        norm = k1 * (1.0 - b + b * lengths_arr[rows_arr] / avgdl)
        weights = idf[cols_arr] * tf * (k1 + 1.0) / (tf + norm)
        # [V, D]: term -> document weights, so scores = query_terms [Q, V] @ weights [V, D]
        self.weights = sparse.csr_matrix((weights, (cols_arr, rows_arr)), shape=(len(self.vocab), n_docs))
        self.n_docs = n_docs

    def query_matrix(self, query_texts: Sequence[str]) -> sparse.csr_matrix:
        """[Q, V] 0/1 matrix of the distinct known terms of each query."""
        rows, cols = [], []
        for row, text in enumerate(query_texts):
            for term in sorted(set(tokenize(text))):
                col = self.vocab.get(term)
                if col is not None:
                    rows.append(row)
                    cols.append(col)
        data = np.ones(len(rows), dtype=np.float64)
        return sparse.csr_matrix((data, (rows, cols)), shape=(len(query_texts), len(self.vocab)))

    def scores(self, query_texts: Sequence[str]) -> np.ndarray:
        """BM25 scores [Q, D] (float64)."""
        return np.asarray((self.query_matrix(query_texts) @ self.weights).todense())

    def search(
        self, query_texts: Sequence[str], k: int, *, doc_ids: Sequence[str] | None = None, chunk_size: int = 256
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` documents per query -> (scores [Q, k] float64, indices [Q, k] int64), best first."""
        from .retrieval import tie_order

        k = min(int(k), self.n_docs)
        order = tie_order(doc_ids) if doc_ids is not None else np.arange(self.n_docs)
        out_scores, out_indices = [], []
        for start in range(0, len(query_texts), chunk_size):
            block = self.scores(query_texts[start : start + chunk_size])[:, order]       # [q, D] in tie order
            positions = np.argsort(-block, axis=1, kind="stable")[:, :k]
            out_scores.append(np.take_along_axis(block, positions, axis=1))
            out_indices.append(order[positions])
        if not out_scores:
            return np.zeros((0, k)), np.zeros((0, k), dtype=np.int64)
        return np.concatenate(out_scores), np.concatenate(out_indices)
