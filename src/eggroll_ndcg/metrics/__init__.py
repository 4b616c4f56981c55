"""Ranking metrics: batched torch metrics (training fitness), trec_eval-exact corpus evaluation, statistics.

See README.md in this folder for the definitions and the tie rule.
"""

from .ranking import ideal_dcg, map_at_k, mrr_at_k, ndcg_at_k, rank_top_k, ranking_metrics, recall_at_k
from .stats import bootstrap_ci, holm, paired_t_test, randomization_test, win_tie_loss
from .trec import Evaluation, evaluate, read_qrels, read_run, write_qrels, write_run

__all__ = [
    "ranking_metrics", "ideal_dcg", "rank_top_k", "ndcg_at_k", "mrr_at_k", "recall_at_k", "map_at_k",
    "Evaluation", "evaluate", "read_run", "write_run", "read_qrels", "write_qrels",
    "paired_t_test", "randomization_test", "bootstrap_ci", "holm", "win_tie_loss",
]
