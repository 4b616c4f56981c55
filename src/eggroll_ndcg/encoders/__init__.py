"""Frozen text encoders and the content-addressed embedding cache (see README.md)."""

from .base import Encoder, Kind, load_encoder
from .cache import (
    CacheCorruptionWarning,
    CollectionEmbeddings,
    cache_key,
    cache_path,
    default_cache_dir,
    encode_cached,
    encode_collection,
)

__all__ = [
    "CacheCorruptionWarning",
    "CollectionEmbeddings",
    "Encoder",
    "Kind",
    "cache_key",
    "cache_path",
    "default_cache_dir",
    "encode_cached",
    "encode_collection",
    "load_encoder",
]
