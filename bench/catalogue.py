"""Builds a large benchmark catalogue: N videos in the database and the same N in the search index.

Videos are variations of the demo catalogue (its titles, tags, descriptions and transcripts, with a few
words of the catalogue's own vocabulary added so no two texts are alike), spread over 50 owners. The
database rows go in through Piccolo in bulk. The index gets the real BM25 side of every text; its
dense side is each demo video's real embedding moved by a small random offset (cosine ~0.9 to the
original), because embedding 100k texts with the local model would take hours on 2 cores. That keeps
the vectors clustered like real ones; queries are still embedded for real at request time.

Usage (settings from the environment, as the app reads them):
    .venv/bin/python -m bench.catalogue --videos 100000 --ids public_ids.txt
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from core.database import bind_tables, build_engine, close_database, open_database
from core.embeddings import DIMENSION, installed_embedder
from core.settings import load_settings
from core.vectors import EmbeddedVectorIndex, VectorRecord
from core.vocabulary import VOCABULARY_TABLES, Document, record
from features.demo.demo import DemoVideo, load_demo_catalogue
from features.search_index.search_index import indexed_metadata, indexed_text
from features.users.users import User
from features.videos.videos import Video, VideoTag

OWNERS = 50
CHUNK = 1_000
# Offset norm per dimension: |noise| ~ 0.48 gives cosine ~0.9 between a variant and its demo video.
_NOISE = 0.48 / np.sqrt(DIMENSION)


def _variant(template: DemoVideo, number: int, vocabulary: list[str], rng: random.Random) -> dict:
    extra = " ".join(rng.sample(vocabulary, 6))
    return {
        "title": f"{template.title} (take {number})"[:200],
        "description": f"{template.description} {extra}"[:5000],
        "tags": template.tags,
        "transcript": template.transcript,
        "visibility": template.visibility,
        "duration_seconds": template.duration_seconds,
    }


async def inserted_videos(
    count: int, owner_ids: list[Any], rng: random.Random
) -> AsyncIterator[tuple[list[dict], list[int]]]:
    """Insert `count` variations of the demo videos (tables bound already), a chunk at a time,
    yielding each chunk's rows and which demo video each row varies."""
    catalogue = load_demo_catalogue()
    vocabulary = sorted(
        {word for item in catalogue for word in re.findall(r"[a-z]{5,}", item.description.lower())}
    )
    now = datetime.now(UTC)
    for start in range(0, count, CHUNK):
        rows, templates = [], []
        for number in range(start, min(count, start + CHUNK)):
            template = rng.randrange(len(catalogue))
            moment = now - timedelta(seconds=30 * (count - number))
            rows.append(
                _variant(catalogue[template], number, vocabulary, rng)
                | {
                    "id": uuid.uuid4(),
                    "owner": owner_ids[number % len(owner_ids)],
                    "url": f"https://media.clipdex.example/bench/{number}.mp4",
                    "has_transcript": catalogue[template].transcript is not None,
                    "created_at": moment,
                    "updated_at": moment,
                }
            )
            templates.append(template)
        await Video.insert(*[Video(**row) for row in rows])
        await VideoTag.insert(*[VideoTag(video=row["id"], tag=tag) for row in rows for tag in row["tags"]])
        yield rows, templates


async def build(videos: int, seed: int = 7) -> list[str]:
    """Fill the configured database and index; returns the public video ids, shuffled."""
    settings = load_settings()
    engine = build_engine(settings)
    bind_tables(engine, [User, Video, VideoTag, *VOCABULARY_TABLES])
    await open_database(engine, settings)
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    catalogue = load_demo_catalogue()

    started = time.perf_counter()
    centres = installed_embedder().embed([indexed_text(msgspec.structs.asdict(item)) for item in catalogue])
    print(f"embedded {len(catalogue)} demo videos in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    owners = [
        User(
            email=f"owner{n}@bench.clipdex.example",
            username=f"owner{n}",
            username_key=f"owner{n}",
            display_name=f"Bench owner {n}",
            password_hash="!bench-owners-cannot-log-in",
        )
        for n in range(OWNERS)
    ]
    await User.insert(*owners)
    owner_ids = [row["id"] for row in await User.select(User.id).where(User.username_key.like("owner%"))]

    index = EmbeddedVectorIndex(
        dimension=DIMENSION, similarity="COSINE", index_type="HYBRID", path=Path(settings.vector_index_path)
    )
    await index.open()
    public: list[str] = []
    done = 0
    started = time.perf_counter()
    async for rows, templates in inserted_videos(videos, owner_ids, rng):
        dense = centres[templates] + noise.normal(0, _NOISE, (len(rows), DIMENSION)).astype(np.float32)
        dense /= np.linalg.norm(dense, axis=1, keepdims=True)
        # Upsert through the port: the engine derives the BM25 side from `data`, as for real videos.
        await index.upsert(
            [
                VectorRecord(
                    id=str(row["id"]), vector=vector, data=indexed_text(row), metadata=indexed_metadata(row)
                )
                for row, vector in zip(rows, dense.tolist(), strict=True)
            ]
        )
        # The vocabulary the indexer keeps (typo correction, suggestions), as the relay would record it.
        await record(
            [
                Document(
                    str(r["id"]), str(r["owner"]), r["visibility"], r["title"], r["tags"], indexed_text(r)
                )
                for r in rows
            ],
            [],
        )
        public += [str(row["id"]) for row in rows if row["visibility"] == "public"]
        done += len(rows)
        print(f"\r{done} videos", end="", file=sys.stderr)
    await index.close()
    await close_database(engine)
    print(f"\nbuilt {videos} videos in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    rng.shuffle(public)
    return public


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--ids", type=Path, help="write the public video ids here, shuffled")
    args = parser.parse_args()
    public = asyncio.run(build(args.videos))
    if args.ids is not None:
        args.ids.write_text("\n".join(public) + "\n")


if __name__ == "__main__":
    main()
