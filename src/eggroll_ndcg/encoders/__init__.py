"""Frozen text encoders and the content-addressed embedding cache (see README.md)."""

from .base import Encoder, Kind
from .cache import (
    CacheCorruptionWarning,
    CollectionEmbeddings,
    cache_key,
    cache_path,
    default_cache_dir,
    encode_cached,
    encode_collection,
)
from .registry import ALIASES, BACKENDS, is_known_encoder, load_encoder, register_backend

__all__ = [
    "ALIASES",
    "BACKENDS",
    "CacheCorruptionWarning",
    "CollectionEmbeddings",
    "Encoder",
    "Kind",
    "cache_key",
    "cache_path",
    "default_cache_dir",
    "encode_cached",
    "encode_collection",
    "is_known_encoder",
    "load_encoder",
    "register_backend",
]
