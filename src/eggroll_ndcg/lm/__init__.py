"""ES against GRPO on a tiny causal language model (issue 18): the conciseness task on stdlib docstrings,
held-out judges and weight-space analysis. See README.md and docs/language_model.md.

Kept minimal and lazy: importing the package imports neither transformers nor trl; import the modules
(`eggroll_ndcg.lm.compare`, `.pretrain`, ...) for the functions.
"""
