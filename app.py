"""The clipdex application: settings in, a wired Litestar app out.

`litestar run` finds `create_app` here; production servers call it as a factory.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import strawberry
from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import CacheControlHeader
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.plugins.prometheus import PrometheusConfig
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path

from core import graphql_explorer
from core.auth import LoginRateLimiter, Passwords, TokenRevocations, bearer_authenticator
from core.backends import build_cache, build_job_queue, build_vector_index
from core.cache import Cache, ReadThroughCache
from core.database import bind_tables, build_engine, check_database, close_database, open_database
from core.errors import EXCEPTION_HANDLERS
from core.graphql import GraphQLSchemaCommand, build_schema, graphql_routes
from core.health import CatchingUp, health, metrics, ready
from core.heap import freeze_long_lived_objects, thaw_long_lived_objects
from core.http_options import AllowEveryMethod
from core.jobs import JobQueue, Jobs
from core.observability import (
    CachedLabelsPrometheusMiddleware,
    RequestContext,
    configure_logging,
    silence_server_access_log,
)
from core.outbox import AnnouncePublished, OutboxLag, OutboxRelay, outbox_lag
from core.qstash_jobs import run_job
from core.ranking import CatalogueSize
from core.request_body import JSONBodyRequest, RequestBodySchemas, read_request_body
from core.settings import Settings, load_settings_or_exit
from core.shortcuts import CachedAnswers
from core.single_flight import SingleFlight
from core.startup import OneLineStartupApp, open_search_index
from core.vectors import VectorIndex
from core.vocabulary import Vocabulary
from features.demo import demo
from features.likes import likes
from features.search import search
from features.search_index import search_index
from features.users import users
from features.videos import videos
from features.views import views
from piccolo_conf import APP_REGISTRY

API_DESCRIPTION = """A video catalogue with semantic search.

Errors are RFC 9457 problem details (`application/problem+json`); invalid input names the field in
`errors[].field`. Every response carries `X-Request-ID`."""

# The docs UI's files come from the installed swagger-ui-bundle-v2 package and are served by the app
# itself, so /schema works without internet. The directory name carries Swagger UI's version
# (swagger-ui-5.31.0), so the URLs change with it and the files can be cached for good.
DOCS_ASSETS_PATH = f"/schema/assets/{swagger_ui_path.name}"


def create_app(
    settings: Settings | None = None,
    *,
    cache: Cache | None = None,
    vector_index: VectorIndex | None = None,
    jobs: Jobs | None = None,
) -> Litestar:
    """The app for these settings (read from the environment when not given).

    `cache` and `vector_index` replace the ones the settings select; the tests use them to run against
    failing services. `jobs` receives the app's jobs (tests add their own to it first).
    """
    settings = settings or load_settings_or_exit()
    configure_logging(settings)

    engine = build_engine(settings)
    bind_tables(
        engine, [table for config in APP_REGISTRY.app_configs.values() for table in config.table_classes]
    )
    cache = cache if cache is not None else build_cache(settings)
    revocations = TokenRevocations(cache)
    login_limiter = LoginRateLimiter(cache, settings.login_rate_limit, settings.login_rate_window_seconds)
    signed_in_users = users.SignedInUsers(cache, revocations, settings.access_token_ttl_seconds)
    jwt_auth = users.build_user_auth(settings, signed_in_users)
    passwords = Passwords(settings.password_hash_time_cost, settings.password_hash_memory_kib)
    video_reads = videos.VideoReads(cache, settings)
    route_metrics = PrometheusConfig(
        app_name="clipdex",
        prefix="clipdex",
        group_path=True,
        middleware_class=CachedLabelsPrometheusMiddleware,
    ).middleware
    view_counter = views.ViewCounter(cache, engine, video_reads)
    vector_index = vector_index if vector_index is not None else build_vector_index(settings)
    vocabulary = Vocabulary()
    indexer = search_index.SearchIndexer(vector_index, cache, vocabulary)
    index_relay = OutboxRelay(videos.VIDEO_CHANGES, indexer.sync, engine)
    jobs = jobs if jobs is not None else Jobs()
    job_queue = build_job_queue(settings, jobs)
    register_jobs(jobs, job_queue, settings, index_relay, indexer, view_counter)

    async def start_reindex_jobs() -> str:
        run = uuid.uuid4().hex
        await job_queue.enqueue(REINDEX_JOB, {"run": run, "after": None}, dedup_key=f"reindex-{run}-start")
        return f"Queued the rebuild as {REINDEX_JOB} jobs (run {run}): the app runs them a batch at a time."

    async def announce_published(published: dict[str, list[str]]) -> None:
        # With QStash no relay polls: each committed change asks for its own indexing job.
        if keys := published.get(videos.VIDEO_CHANGES):
            await job_queue.enqueue(INDEX_JOB, {"keys": sorted(set(keys))})

    async def index_lag() -> OutboxLag | CatchingUp:
        lag = await outbox_lag(videos.VIDEO_CHANGES)
        try:
            await vector_index.info()
        except Exception as exc:
            # The lag matters most while the index is down: say it in the failure.
            raise RuntimeError(
                f"{exc!r}; {lag.pending} changes waiting, oldest {lag.oldest_age_seconds}s"
            ) from exc
        # Changes still waiting: search answers, but without them yet.
        return CatchingUp(lag) if lag.pending else lag

    readiness_checks = {
        "database": lambda: check_database(engine),
        "cache": cache.ping,
        "search_index": index_lag,
        "jobs": lambda: job_status(job_queue),
    }

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await open_database(engine, settings)
        await cache.open()
        await open_search_index(vector_index, settings)
        if not settings.uses_upstash_vector:
            # The embedded index admits one process (a file lock), so a change still leased is a dead
            # process's, cut off mid-delivery: deliver it now, not when its lease runs out (60 s).
            await index_relay.release_leases()
        freeze_long_lived_objects()  # the loaded index, the model, the app: built for good
        silence_server_access_log()
        try:
            async with job_queue.running():
                yield
        finally:
            thaw_long_lived_objects()
            await vector_index.close()
            try:
                await cache.close()
            except Exception:  # a cache that is down must not stop shutdown or keep the pool open
                logging.getLogger("clipdex.cache").warning("cache close failed", exc_info=True)
            await close_database(engine)

    def provide(value: object) -> Provide:
        return Provide(lambda: value, use_cache=True, sync_to_thread=False)

    # What handlers receive by name; GraphQL resolvers get the same objects (info.context.service).
    dependencies = {
        "settings": provide(settings),
        "db": provide(engine),
        "cache": provide(cache),
        "token_issuer": provide(users.TokenIssuer(jwt_auth, settings.access_token_ttl_seconds)),
        "revocations": provide(revocations),
        "signed_in_users": provide(signed_in_users),
        "passwords": provide(Passwords(settings.password_hash_time_cost, settings.password_hash_memory_kib)),
        "login_limiter": provide(login_limiter),
        "readiness_checks": provide(readiness_checks),
        "video_reads": provide(video_reads),
        "view_counter": provide(view_counter),
        "job_queue": provide(job_queue),
        "search_index": provide(vector_index),
        "catalogue_size": provide(CatalogueSize(vector_index)),
        "vocabulary": provide(vocabulary),
        "search_cache": provide(ReadThroughCache(cache, SingleFlight(settings.single_flight_wait_seconds))),
        "remove_account": provide(functools.partial(likes.delete_account, engine=engine, reads=video_reads)),
    }
    graphql_schema = build_graphql_schema(settings)
    graphql_services = {
        **{name: dependency.dependency() for name, dependency in dependencies.items()},
        # What the features supply one another's GraphQL types (see features/users, features/videos).
        "user_videos": videos.user_videos,
        "user_likes": likes.user_likes,
        "liked_among": likes.liked_among,
        "similar_videos": functools.partial(
            search.similar_for_many, vector_index, dependencies["catalogue_size"].dependency()
        ),
    }

    app = OneLineStartupApp(
        route_handlers=[
            health,
            ready,
            metrics,
            users.router,
            videos.router,
            likes.router,
            views.router,
            search.router,
            *([] if job_queue.in_process else [run_job]),
            search.search_page,
            search.search_page_assets,
            *graphql_routes(graphql_schema, graphql_services, graphql_explorer.explorer_page),
            *graphql_explorer.EXPLORER_ROUTERS,
            create_static_files_router(
                path=DOCS_ASSETS_PATH,
                directories=[swagger_ui_path],
                cache_control=CacheControlHeader(max_age=31_536_000, public=True, immutable=True),
                include_in_schema=False,
                name="docs_assets",
            ),
        ],
        dependencies=dependencies,
        lifespan=[lifespan],
        plugins=[
            demo.DemoSeedCommand(engine, passwords, settings),
            search_index.ReindexCommand(
                indexer, vector_index, engine, settings, None if job_queue.in_process else start_reindex_jobs
            ),
            RequestBodySchemas(),
            GraphQLSchemaCommand(graphql_schema),
        ],
        on_app_init=[jwt_auth.on_app_init],
        middleware=[route_metrics, AllowEveryMethod()],
        request_class=JSONBodyRequest,
        before_request=read_request_body,
        exception_handlers=EXCEPTION_HANDLERS,
        cors_config=CORSConfig(
            allow_origins=list(settings.cors_allow_origins),
            # ETag: a browser client needs it to send If-None-Match (a 304 instead of the whole video).
            expose_headers=["X-Request-ID", "Retry-After", "X-Cache", "ETag"],
        )
        if settings.cors_allow_origins
        else None,
        request_max_body_size=settings.max_request_body_bytes,
        openapi_config=OpenAPIConfig(
            title="clipdex",
            version="1.0.0",
            description=API_DESCRIPTION,
            path="/schema",
            # The first plugin also answers /schema itself.
            render_plugins=[
                SwaggerRenderPlugin(
                    path="/swagger",
                    js_url=f"{DOCS_ASSETS_PATH}/swagger-ui-bundle.js",
                    css_url=f"{DOCS_ASSETS_PATH}/swagger-ui.css",
                    standalone_preset_js_url=f"{DOCS_ASSETS_PATH}/swagger-ui-standalone-preset.js",
                    favicon=f"<link rel='icon' type='image/png' href='{DOCS_ASSETS_PATH}/favicon-32x32.png'>",
                )
            ],
        ),
        # configure_logging set up every logger; Litestar's default would put the root logger at INFO.
        logging_config=None,
        debug=False,
    )
    # Litestar's middleware runs only for routed requests; wrapping the whole handler gives 404s and
    # 405s a request id and an access-log line too.
    # The hottest cached read answered beneath Litestar's routing and handler machinery, with the
    # route's own auth and metrics (core/shortcuts.py); everything else goes on to the routes.
    app.asgi_handler = CachedAnswers(
        app.asgi_handler,
        [videos.video_read_shortcut(video_reads)],
        bearer_authenticator(jwt_auth),
        route_metrics(app=app.asgi_handler),
        cross_origin_to_routes=bool(settings.cors_allow_origins),
    )
    app.asgi_handler = RequestContext(app.asgi_handler)
    if not job_queue.in_process:
        app.asgi_handler = AnnouncePublished(app.asgi_handler, announce_published)
    return app


def build_graphql_schema(settings: Settings) -> strawberry.Schema:
    """The GraphQL schema of every feature (schema.graphql holds it: `make schema.graphql`)."""
    return build_schema(
        queries=[users.UserQueries, videos.VideoQueries, search.SearchQueries],
        mutations=[users.UserMutations, videos.VideoMutations, likes.LikeMutations, views.ViewMutations],
        introspection=settings.allows_graphql_introspection,
    )


INDEX_JOB = "search.index"
REINDEX_JOB = "search.reindex-batch"


def register_jobs(
    jobs: Jobs,
    job_queue: JobQueue,
    settings: Settings,
    index_relay: OutboxRelay,
    indexer: search_index.SearchIndexer,
    view_counter: views.ViewCounter,
) -> None:
    """The background work, as jobs: in process these are the loops clipdex always ran; with QStash,
    HTTP calls QStash makes (periodic ones at most once a minute, cron's finest)."""

    async def index_changes(payload: dict) -> int:
        return await index_relay.deliver_keys([str(key) for key in payload["keys"]])

    async def sweep_outbox(_: object) -> int:
        # The outbox is the source of truth: whatever no indexing job delivered (a crash between a
        # commit and its announcement, a failed delivery backing off), this delivers.
        return await index_relay.deliver_once()

    async def flush_views(_: object) -> int:
        return await view_counter.flush()

    async def reindex_batch(payload: dict) -> str | None:
        # One batch per job, the next one enqueued by this one: a rebuild of any size, a few seconds
        # per call. Deduplicated per run and batch, so a redelivered batch does not fork the chain.
        run, after = str(payload["run"]), payload.get("after")
        last = await indexer.reindex_batch(after, int(payload.get("batch_size", 64)))
        if last is not None:
            await job_queue.enqueue(
                REINDEX_JOB, {**payload, "after": last}, dedup_key=f"reindex-{run}-after-{last}"
            )
        return last

    jobs.register(INDEX_JOB, index_changes)
    jobs.register(
        "search.outbox-sweep", sweep_outbox, every_seconds=settings.outbox_poll_seconds, again_at_once=True
    )
    jobs.register(
        "views.flush", flush_views, every_seconds=settings.view_flush_interval_seconds, at_shutdown=True
    )
    jobs.register(REINDEX_JOB, reindex_batch)


async def job_status(job_queue: JobQueue) -> dict[str, object]:
    """/ready's view of the jobs: where they run and how many runs failed since start-up."""
    return {"runs_in": "process" if job_queue.in_process else "qstash", "failed": job_queue.jobs.failed}
