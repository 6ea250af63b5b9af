"""The embedding runtimes: the ONNX export reproduces the reference model, is checked
before it is kept, and is made once and cached."""

from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command

from workers.memory import embedding, onnx_encoder

TEXTS = [
    "Went for a 5 km run",
    "jogging",
    "File the tax return before Friday\nReceipts in the blue folder\nProject: Admin",
    "Écrire le chapitre 3 — 日本語も少し",
    "x",
    "a long description " * 120,  # past the model's 256-token limit: truncated alike
]


@pytest.fixture(scope="module")
def reference() -> embedding.Encoder:
    return embedding.load("torch")


def test_onnx_vectors_match_the_reference_model(reference) -> None:
    expected = reference.encode(TEXTS, batch_size=64)
    onnx = embedding.load("onnx")
    batched = onnx.encode(TEXTS, batch_size=4)  # two batches, texts reordered by length inside
    single = np.vstack([onnx.encode([t], batch_size=1) for t in TEXTS])
    assert batched.shape == single.shape == (len(TEXTS), 384)
    assert np.min(np.sum(expected * batched, axis=1)) >= 0.999
    assert np.min(np.sum(expected * single, axis=1)) >= 0.999


def test_the_default_runtime_is_onnx(settings) -> None:
    assert settings.MEMORY_EMBEDDING_RUNTIME == "onnx"
    assert isinstance(embedding.encoder(), onnx_encoder.OnnxEncoder)
    assert embedding.embed([]).shape == (0, 384)


def test_the_export_is_made_once_and_cached(settings, tmp_path: Path, monkeypatch) -> None:
    settings.MEMORY_MODEL_CACHE = tmp_path
    first = embedding.load("onnx")
    cached = onnx_encoder.cached_model_path(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [cached.name]  # no temporary file left

    def no_second_export(*args: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_encoder, "export", no_second_export)
    again = embedding.load("onnx")
    assert np.allclose(first.encode(TEXTS[:2], 2), again.encode(TEXTS[:2], 2))


def test_an_export_that_does_not_match_is_refused(settings, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(onnx_encoder, "MIN_COSINE", 1.0001)  # no export can reach it
    settings.MEMORY_MODEL_CACHE = tmp_path
    with pytest.raises(onnx_encoder.ExportMismatch, match="worst cosine"):
        embedding.load("onnx")
    assert list(tmp_path.iterdir()) == []  # nothing kept: the next start tries again


def test_an_unknown_runtime_is_a_clear_error() -> None:
    with pytest.raises(ImportError, match="unknown MEMORY_EMBEDDING_RUNTIME 'tensorflow'"):
        embedding.load("tensorflow")


def test_the_prepare_command_leaves_the_model_ready(settings, tmp_path: Path, monkeypatch) -> None:
    settings.MEMORY_MODEL_CACHE = tmp_path
    monkeypatch.setattr(embedding, "_encoder", None)  # as in a fresh process
    out = StringIO()
    call_command("memory", "prepare", stdout=out)
    assert out.getvalue().strip() == "embedding model ready (onnx, 384 dimensions)"
    assert onnx_encoder.cached_model_path(tmp_path).exists()
