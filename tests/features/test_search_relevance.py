"""Search quality over the demo catalogue, measured against a labelled relevance set.

`search_relevance.json` was written for clipdex: queries that share no word with their answers
(semantic), queries for rare exact terms (keyword), and mixed ones. `search_relevance_typos.json`
holds its keyword and mixed queries with one realistic typo each (a swap of neighbours, a dropped or
a doubled letter, in a word of 5+ letters; the 6 queries with no such word are left out), for typo
tolerance. Run with `-s` to see the tables.
"""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
import pytest

from core.ranking import CatalogueSize
from core.typos import TypoIndex, corrections
from core.vectors import EmbeddedVectorIndex
from core.vocabulary import counted_terms
from features.demo.demo import load_demo_catalogue
from features.search.search import keywords_for, ranked_ids
from features.search_index.search_index import indexed_text
from tests.features.search_support import demo_catalogue_index

RELEVANCE = Path(__file__).with_name("search_relevance.json")
TYPOS = Path(__file__).with_name("search_relevance_typos.json")
MODES = ("semantic", "keyword", "hybrid")


class Judgement(msgspec.Struct):
    query: str
    kind: str
    relevant: list[str]


class Typo(msgspec.Struct):
    query: str
    original: str
    typo: str


def ndcg_at_10(ranked: list[str], relevant: list[str]) -> float:
    # Graded: the first listed answer is the best one (gain 2), the others are good (gain 1).
    gains = {slug: (2 if i == 0 else 1) for i, slug in enumerate(relevant)}
    dcg = sum(gains.get(slug, 0) / math.log2(rank + 2) for rank, slug in enumerate(ranked[:10]))
    ideal = sorted(gains.values(), reverse=True)
    idcg = sum(gain / math.log2(rank + 2) for rank, gain in enumerate(ideal[:10]))
    return dcg / idcg


def recall_at_10(ranked: list[str], relevant: list[str]) -> float:
    return len(set(ranked[:10]) & set(relevant)) / len(relevant)


@pytest.fixture(scope="module")
async def demo_index() -> EmbeddedVectorIndex:
    return await demo_catalogue_index()


async def measure(index: EmbeddedVectorIndex, mode: str) -> dict[str, tuple[float, float]]:
    """Mean (nDCG@10, recall@10) per query kind, and over all queries under "all"."""
    judgements = msgspec.json.decode(RELEVANCE.read_bytes(), type=list[Judgement])
    per_kind: dict[str, list[tuple[float, float]]] = {}
    catalogue_size = CatalogueSize(index)
    for judgement in judgements:
        results = await ranked_ids(
            index, catalogue_size, judgement.query, mode, "visibility = 'public'", depth=100
        )
        ranked = [result.id for result in results]
        scores = (ndcg_at_10(ranked, judgement.relevant), recall_at_10(ranked, judgement.relevant))
        per_kind.setdefault(judgement.kind, []).append(scores)
        per_kind.setdefault("all", []).append(scores)
    return {
        kind: (sum(s[0] for s in values) / len(values), sum(s[1] for s in values) / len(values))
        for kind, values in per_kind.items()
    }


async def test_relevance_set_is_well_formed() -> None:
    judgements = msgspec.json.decode(RELEVANCE.read_bytes(), type=list[Judgement])
    public = {item.slug for item in load_demo_catalogue() if item.visibility == "public"}
    assert len(judgements) >= 40
    assert {j.kind for j in judgements} == {"semantic", "keyword", "mixed"}
    assert all(j.relevant and set(j.relevant) <= public for j in judgements)


async def test_each_mode_clears_its_floor_and_hybrid_keeps_up(demo_index: EmbeddedVectorIndex) -> None:
    figures = {mode: await measure(demo_index, mode) for mode in MODES}
    print("\nmode      kind      nDCG@10  recall@10")
    for mode, kinds in figures.items():
        for kind, (ndcg, recall) in sorted(kinds.items()):
            print(f"{mode:9} {kind:9} {ndcg:7.3f}  {recall:9.3f}")
    # Semantic search must find paraphrases; keyword search must find rare exact terms.
    assert figures["semantic"]["semantic"][1] >= 0.75
    assert figures["keyword"]["keyword"][1] >= 0.9
    # Hybrid, the default, must be good at both kinds and overall no worse than the better single mode.
    assert figures["hybrid"]["semantic"][1] >= 0.75
    assert figures["hybrid"]["keyword"][1] >= 0.9
    best_single = max(figures["semantic"]["all"][0], figures["keyword"]["all"][0])
    assert figures["hybrid"]["all"][0] >= best_single - 0.01
    assert figures["hybrid"]["all"][1] >= max(figures["semantic"]["all"][1], figures["keyword"]["all"][1])


def demo_vocabulary() -> TypoIndex:
    """The vocabulary the indexer records for the demo catalogue: counted terms of public videos."""
    counts: dict[str, int] = {}
    for item in load_demo_catalogue():
        if item.visibility == "public":
            row = {"title": item.title, "tags": item.tags, "description": item.description}
            for term in counted_terms(indexed_text({**row, "transcript": item.transcript})):
                counts[term] = counts.get(term, 0) + 1
    return TypoIndex(counts.items())


async def typo_figures(index: EmbeddedVectorIndex, mode: str) -> dict[str, tuple[float, float]]:
    """Mean (nDCG@10, recall@10) over the typo'd queries: as typed without correction ("typo"),
    corrected as search corrects them ("corrected"), and their untypo'd originals ("original")."""
    relevant = {
        j.query: j.relevant for j in msgspec.json.decode(RELEVANCE.read_bytes(), type=list[Judgement])
    }
    typos = msgspec.json.decode(TYPOS.read_bytes(), type=list[Typo])
    vocabulary = demo_vocabulary()
    catalogue_size = CatalogueSize(index)
    runs = {"original": [], "typo": [], "corrected": []}
    for typo in typos:
        fixes = corrections(typo.query, vocabulary)
        for run, query, keywords in [
            ("original", typo.original, typo.original),
            ("typo", typo.query, typo.query),
            ("corrected", typo.query, keywords_for(typo.query, fixes)),
        ]:
            results = await ranked_ids(
                index, catalogue_size, query, mode, "visibility = 'public'", depth=100, keywords=keywords
            )
            ranked = [result.id for result in results]
            answers = relevant[typo.original]
            runs[run].append((ndcg_at_10(ranked, answers), recall_at_10(ranked, answers)))
    return {
        run: (sum(s[0] for s in values) / len(values), sum(s[1] for s in values) / len(values))
        for run, values in runs.items()
    }


async def test_typo_set_is_well_formed() -> None:
    judgements = {j.query: j for j in msgspec.json.decode(RELEVANCE.read_bytes(), type=list[Judgement])}
    typos = msgspec.json.decode(TYPOS.read_bytes(), type=list[Typo])
    assert len(typos) >= 70
    assert all(judgements[t.original].kind in {"keyword", "mixed"} for t in typos)
    assert {t.typo for t in typos} == {"swap", "drop", "double"}
    assert all(t.query != t.original for t in typos)


async def test_corrected_typos_keep_most_of_the_recall(demo_index: EmbeddedVectorIndex) -> None:
    figures = {mode: await typo_figures(demo_index, mode) for mode in ("keyword", "hybrid")}
    print("\nmode      queries    nDCG@10  recall@10")
    for mode, runs in figures.items():
        for run, (ndcg, recall) in runs.items():
            print(f"{mode:9} {run:10} {ndcg:7.3f}  {recall:9.3f}")
    for mode, runs in figures.items():
        # Corrected, typo'd queries find at least 90% of what their originals find (measured 100% in
        # keyword mode, 98.6% in hybrid: see README), and more than as typed.
        assert runs["corrected"][1] >= 0.9 * runs["original"][1], mode
        assert runs["corrected"][1] > runs["typo"][1], mode
    # As typed, keyword search misses answers that correction finds (measured 0.901 -> 0.989).
    assert figures["keyword"]["corrected"][1] - figures["keyword"]["typo"][1] >= 0.05
