"""Batched, KV-cached generation of responses (``sampling``) and cache reuse across turns (``kv_reuse``)."""

from models.generation.sampling import BACKENDS, generate, generate_with_cache, stop_token_ids

__all__ = ["BACKENDS", "generate", "generate_with_cache", "stop_token_ids"]
