"""eggroll-ndcg: optimize ranking metrics directly with EGGROLL low-rank evolution strategies."""

__version__ = "0.1.0"
