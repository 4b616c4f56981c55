"""Retrieval heads on frozen embeddings (`heads`) and their export as sentence-transformers models (`export`)."""

from .export import export_sentence_transformer
from .heads import HEADS, AdapterHead, LinearHead, MLPHead, SubspaceHead, build_head, principal_basis, score_pool

__all__ = ["HEADS", "AdapterHead", "LinearHead", "MLPHead", "SubspaceHead", "build_head", "principal_basis", "export_sentence_transformer", "score_pool"]
