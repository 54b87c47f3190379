"""The local QStash server through the official `qstash` SDK (QStash and AsyncQStash): publishing, delivery
to a real HTTP server here that checks every signature with `qstash.Receiver`, retries and their backoff,
the dead-letter queue, callbacks, deduplication, delays, queues, schedules, the log, key rotation,
restarts with --path, and the errors (401, 400, destinations off loopback)."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import jwt
import pytest
from qstash import AsyncQStash, QStash, Receiver
from qstash.errors import QStashError, SignatureError
from qstash.receiver import verify_with_key

from upstash_local.qstash_server import Cron, LocalQStashServer, evaluate_retry_delay

# Retries wait a hundredth of QStash's backoff (12 s -> 0.12 s); a cron minute lasts one second.
FAST = ["--retry-delay-scale", "0.01", "--cron-minute-seconds", "1"]


@dataclass
class Delivery:
    path: str
    method: str
    headers: dict[str, str]
    body: bytes
    at: float
    url: str


@dataclass
class Destination:
    """A real HTTP server on loopback that records each request and answers as told, per path."""

    base_url: str
    deliveries: list[Delivery] = field(default_factory=list)
    statuses: dict[str, list[int]] = field(default_factory=dict)
    sleeps: dict[str, list[float]] = field(default_factory=dict)
    active: dict[str, int] = field(default_factory=dict)
    most_active: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def at(self, path: str) -> list[Delivery]:
        with self.lock:
            return [delivery for delivery in self.deliveries if delivery.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 15.0) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.at(path)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"{path}: {len(self.at(path))} deliveries within {timeout} s, wanted {count}")


@pytest.fixture(scope="module")
def destination() -> Iterator[Destination]:
    state: Destination

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            path = self.path
            with state.lock:
                state.deliveries.append(
                    Delivery(path, self.command, dict(self.headers), body, time.monotonic(), state.url(path))
                )
                status = state.statuses[path].pop(0) if state.statuses.get(path) else 200
                sleep = state.sleeps[path].pop(0) if state.sleeps.get(path) else 0.0
                state.active[path] = state.active.get(path, 0) + 1
                state.most_active[path] = max(state.most_active.get(path, 0), state.active[path])
            time.sleep(sleep)
            with state.lock:
                state.active[path] -= 1
            answer = json.dumps({"answered": path, "status": status}).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except OSError:  # the server gave up on us (a timeout test)
                pass

        do_POST = do_PUT = do_GET = do_DELETE = do_PATCH = _serve

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state = Destination(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[LocalQStashServer]:
    with LocalQStashServer.start(options=FAST) as running:
        yield running


@pytest.fixture
def client(server: LocalQStashServer) -> QStash:
    return QStash(server.token, base_url=server.url, retry=False)


@pytest.fixture
def aclient(server: LocalQStashServer) -> AsyncQStash:
    return AsyncQStash(server.token, base_url=server.url, retry=False)


def receiver_of(client: QStash) -> Receiver:
    keys = client.signing_key.get()
    return Receiver(current_signing_key=keys.current, next_signing_key=keys.next)


def unique(name: str) -> str:
    return f"/{name}/{time.monotonic_ns()}"


def never(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return False
        time.sleep(0.02)
    return True


# ---------------------------------------------------------------- publishing and delivery


def test_publish_json_is_delivered_signed_with_forwarded_headers(client: QStash, destination: Destination):
    path = unique("json")
    published = client.message.publish_json(
        url=destination.url(path),
        body={"video": 7},
        # Framing headers are not forwarded: they would describe another request than the one sent.
        headers={"X-Trace": "abc", "Content-Length": "1", "Host": "elsewhere.example"},
    )
    (delivery,) = destination.wait_for(path, 1)
    assert published.deduplicated is False
    assert json.loads(delivery.body) == {"video": 7}
    assert delivery.method == "POST"
    assert delivery.headers["Content-Type"] == "application/json"
    assert delivery.headers["X-Trace"] == "abc"
    assert delivery.headers["Content-Length"] == str(len(delivery.body))
    assert delivery.headers["Host"] == destination.base_url.removeprefix("http://")
    assert delivery.headers["Upstash-Message-Id"] == published.message_id
    assert delivery.headers["Upstash-Retried"] == "0"
    receiver = receiver_of(client)
    signature = delivery.headers["Upstash-Signature"]
    receiver.verify(signature=signature, body=delivery.body.decode(), url=delivery.url)
    with pytest.raises(SignatureError):
        receiver.verify(signature=signature, body=delivery.body.decode() + " ", url=delivery.url)
    with pytest.raises(SignatureError):
        receiver.verify(signature=signature, body=delivery.body.decode(), url=delivery.url + "x")
    # Why, as the current key (which signed it) sees it: the Receiver reports only the next key's refusal.
    current = client.signing_key.get().current
    with pytest.raises(SignatureError, match="body hash"):
        verify_with_key(current, signature=signature, body=delivery.body.decode() + " ", url=delivery.url)
    with pytest.raises(SignatureError, match="subject"):
        verify_with_key(current, signature=signature, body=delivery.body.decode(), url=delivery.url + "x")
    forged = Receiver(current_signing_key="sig_" + "f" * 40, next_signing_key="sig_" + "g" * 40)
    with pytest.raises(SignatureError):
        forged.verify(signature=signature, body=delivery.body.decode(), url=delivery.url)


async def test_raw_body_with_method_and_query_string_async(aclient: AsyncQStash, destination: Destination):
    path = unique("raw") + "?page=2&q=a%20b"
    raw = bytes(range(256))
    await aclient.message.publish(
        url=destination.url(path), body=raw, content_type="application/octet-stream", method="PUT"
    )
    (delivery,) = destination.wait_for(path, 1)
    assert delivery.body == raw
    assert delivery.method == "PUT"
    assert delivery.headers["Content-Type"] == "application/octet-stream"
    keys = await aclient.signing_key.get()
    # The Receiver hashes str bodies; latin-1 keeps each byte as one character, but its UTF-8 differs.
    with pytest.raises(SignatureError, match="body hash"):
        verify_with_key(
            keys.current,
            signature=delivery.headers["Upstash-Signature"],
            body=raw.decode("latin-1"),
            url=delivery.url,
        )
    claims = jwt.decode(delivery.headers["Upstash-Signature"], keys.current, algorithms=["HS256"])
    assert claims["body"] == base64.urlsafe_b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")
    assert claims["sub"] == delivery.url
    assert claims["iss"] == "Upstash"
    assert {"exp", "nbf", "iat", "jti"} <= set(claims)


def test_retries_until_success_with_a_retry_delay_expression(client: QStash, destination: Destination):
    path = unique("flaky")
    destination.statuses[path] = [500, 503]
    published = client.message.publish(
        url=destination.url(path), body="x", retries=3, retry_delay="50 * (1 + retried)"
    )
    deliveries = destination.wait_for(path, 3)
    assert [d.headers["Upstash-Retried"] for d in deliveries] == ["0", "1", "2"]
    assert never(lambda: len(destination.at(path)) > 3, 0.4)
    with pytest.raises(QStashError, match="404"):
        client.message.get(published.message_id)
    states = [log.state.value for log in client.log.list(filter={"message_id": published.message_id}).logs]
    assert states[0] == "DELIVERED"
    assert states.count("RETRY") == 2
    assert states[-1] == "CREATED"
    # The same log in pages of two, by cursor.
    pages, cursor = [], None
    while True:
        page = client.log.list(cursor=cursor, count=2, filter={"message_id": published.message_id})
        pages.append([log.state.value for log in page.logs])
        if page.cursor is None:
            break
        cursor = page.cursor
    assert all(len(page) <= 2 for page in pages)
    assert [state for page in pages for state in page] == states


def test_default_backoff_then_dlq_and_failure_callback(client: QStash, destination: Destination):
    path, failed = unique("down"), unique("failure-callback")
    destination.statuses[path] = [500, 500, 500]
    published = client.message.publish(
        url=destination.url(path),
        body="lost",
        retries=2,
        failure_callback=destination.url(failed),
        failure_callback_headers={"X-Why": "dlq"},
    )
    deliveries = destination.wait_for(path, 3)
    first_gap = deliveries[1].at - deliveries[0].at
    second_gap = deliveries[2].at - deliveries[1].at
    # QStash's e^(2.5 n) s (12 s, then 148 s), at this server's scale of 0.01.
    assert 0.1 <= first_gap < 1.0
    assert 1.3 <= second_gap < 4.0
    (callback,) = destination.wait_for(failed, 1)
    payload = json.loads(callback.body)
    assert payload["sourceMessageId"] == published.message_id
    assert payload["status"] == 500
    assert base64.b64decode(payload["sourceBody"]) == b"lost"
    assert callback.headers["X-Why"] == "dlq"
    receiver_of(client).verify(
        signature=callback.headers["Upstash-Signature"], body=callback.body.decode(), url=callback.url
    )
    entries = [m for m in client.dlq.list().messages if m.message_id == published.message_id]
    assert len(entries) == 1
    entry = client.dlq.get(entries[0].dlq_id)
    assert entry.response_status == 500
    assert json.loads(entry.response_body) == {"answered": path, "status": 500}
    assert entry.body == "lost"
    assert entry.max_retries == 2
    assert client.dlq.delete_many([entry.dlq_id, "dlq_missing"]) == 1
    with pytest.raises(QStashError, match="404"):
        client.dlq.get(entry.dlq_id)
    with pytest.raises(QStashError, match="404"):
        client.dlq.delete(entry.dlq_id)


async def test_a_timeout_is_retried(aclient: AsyncQStash, destination: Destination):
    path = unique("slow")
    destination.sleeps[path] = [3.0]
    await aclient.message.publish(
        url=destination.url(path), body="t", timeout="1s", retries=1, retry_delay="0"
    )
    deliveries = destination.wait_for(path, 2)
    assert deliveries[1].at - deliveries[0].at >= 0.9
    assert deliveries[1].headers["Upstash-Retried"] == "1"


def test_callback_gets_the_destinations_answer(client: QStash, destination: Destination):
    path, called = unique("with-callback"), unique("callback")
    published = client.message.publish_json(
        url=destination.url(path), body={"a": 1}, callback=destination.url(called)
    )
    (callback,) = destination.wait_for(called, 1)
    payload = json.loads(callback.body)
    assert payload["sourceMessageId"] == published.message_id
    assert payload["status"] == 200
    assert json.loads(base64.b64decode(payload["body"])) == {"answered": path, "status": 200}


# ---------------------------------------------------------------- deduplication, delays, cancelling


async def test_deduplication_by_id_and_by_content(aclient: AsyncQStash, destination: Destination):
    path = unique("dedup")
    first = await aclient.message.publish(url=destination.url(path), body="1", deduplication_id="job-1")
    again = await aclient.message.publish(url=destination.url(path), body="2", deduplication_id="job-1")
    assert (again.message_id, again.deduplicated) == (first.message_id, True)
    by_content = [
        await aclient.message.publish_json(
            url=destination.url(path), body={"same": True}, content_based_deduplication=True
        )
        for _ in range(2)
    ]
    assert by_content[1].message_id == by_content[0].message_id
    assert by_content[1].deduplicated is True
    other = await aclient.message.publish_json(
        url=destination.url(path), body={"same": False}, content_based_deduplication=True
    )
    assert other.deduplicated is False
    destination.wait_for(path, 3)
    assert never(lambda: len(destination.at(path)) > 3, 0.3)


def test_delay_not_before_and_cancel(client: QStash, destination: Destination):
    path = unique("delayed")
    sent = time.monotonic()
    delayed = client.message.publish(url=destination.url(path), body="later", delay="2s")
    message = client.message.get(delayed.message_id)
    assert message.not_before - message.created_at == pytest.approx(2000, abs=50)
    assert message.body == "later"
    assert never(lambda: bool(destination.at(path)), 1.5)
    (delivery,) = destination.wait_for(path, 1)
    assert delivery.at - sent >= 1.9

    later = unique("cancelled")
    ids = [
        client.message.publish(
            url=destination.url(later), body="x", not_before=int(time.time()) + 60
        ).message_id
        for _ in range(3)
    ]
    client.message.cancel(ids[0])
    with pytest.raises(QStashError, match="404"):
        client.message.get(ids[0])
    assert client.message.cancel_many(ids) == 2
    assert next(log.state.value for log in client.log.list(filter={"message_id": ids[0]}).logs) == "CANCELED"


def test_batch_json_publishes_each_message(client: QStash, destination: Destination):
    one, two = unique("batch-1"), unique("batch-2")
    answers = client.message.batch_json(
        [
            {"url": destination.url(one), "body": {"n": 1}, "headers": {"X-N": "1"}},
            {"url": destination.url(two), "body": {"n": 2}, "queue": "batch-queue"},
        ]
    )
    assert len({answer.message_id for answer in answers}) == 2
    assert json.loads(destination.wait_for(one, 1)[0].body) == {"n": 1}
    assert destination.wait_for(one, 1)[0].headers["X-N"] == "1"
    assert json.loads(destination.wait_for(two, 1)[0].body) == {"n": 2}
    assert client.queue.get("batch-queue").name == "batch-queue"


# ---------------------------------------------------------------- queues, schedules, keys


def test_queue_delivers_in_order_within_its_parallelism(client: QStash, destination: Destination):
    path = unique("queued")
    destination.sleeps[path] = [0.05] * 12
    client.queue.upsert("serial", parallelism=1)
    client.message.enqueue(queue="serial", url=destination.url(path), body="0")
    # One batch makes the rest within the same millisecond: their order must not hang on their ids.
    client.message.batch(
        [{"queue": "serial", "url": destination.url(path), "body": str(n)} for n in range(1, 10)]
    )
    deliveries = destination.wait_for(path, 10)
    assert [d.body for d in deliveries] == [str(n).encode() for n in range(10)]
    assert destination.most_active[path] == 1

    wide = unique("queued-wide")
    destination.sleeps[wide] = [0.5] * 4
    client.queue.upsert("wide", parallelism=2)
    client.queue.pause("wide")
    for n in range(4):
        client.message.enqueue_json(queue="wide", url=destination.url(wide), body=n)
    assert never(lambda: bool(destination.at(wide)), 0.5)
    assert client.queue.get("wide").lag == 4
    assert client.queue.get("wide").paused is True
    client.queue.resume("wide")
    destination.wait_for(wide, 4)
    assert destination.most_active[wide] == 2
    assert {queue.name for queue in client.queue.list()} >= {"serial", "wide"}
    client.queue.delete("wide")
    with pytest.raises(QStashError, match="404"):
        client.queue.get("wide")


async def test_schedules_fire_pause_resume_and_delete(aclient: AsyncQStash, destination: Destination):
    path = unique("cron")
    # One cron minute lasts one second on this server (--cron-minute-seconds 1).
    schedule_id = await aclient.schedule.create_json(
        destination=destination.url(path), cron="* * * * *", body={"tick": True}, retries=0
    )
    fired = destination.wait_for(path, 2, timeout=6)
    assert {d.headers["Upstash-Schedule-Id"] for d in fired} == {schedule_id}
    assert json.loads(fired[0].body) == {"tick": True}
    keys = await aclient.signing_key.get()
    Receiver(keys.current, keys.next).verify(
        signature=fired[0].headers["Upstash-Signature"], body=fired[0].body.decode(), url=fired[0].url
    )
    schedule = await aclient.schedule.get(schedule_id)
    assert (schedule.cron, schedule.destination, schedule.paused) == (
        "* * * * *",
        destination.url(path),
        False,
    )
    assert schedule.next_schedule_time > schedule.last_schedule_time
    assert schedule_id in {s.schedule_id for s in await aclient.schedule.list()}
    await aclient.schedule.pause(schedule_id)
    paused_at = len(destination.at(path))
    assert (await aclient.schedule.get(schedule_id)).paused is True
    assert never(lambda: len(destination.at(path)) > paused_at + 1, 2.2)  # one may have been in flight
    await aclient.schedule.resume(schedule_id)
    destination.wait_for(path, len(destination.at(path)) + 1, timeout=4)
    await aclient.schedule.delete(schedule_id)
    with pytest.raises(QStashError, match="404"):
        await aclient.schedule.get(schedule_id)
    with pytest.raises(QStashError, match="400"):
        await aclient.schedule.create(destination=destination.url(path), cron="61 * * * *")


def test_rotated_keys_still_verify_with_the_old_receivers_next_key(client: QStash, destination: Destination):
    before = client.signing_key.get()
    after = client.signing_key.rotate()
    assert after.current == before.next
    assert after.next not in (before.current, before.next)
    assert client.signing_key.get() == after
    path = unique("rotated")
    client.message.publish(url=destination.url(path), body="r")
    (delivery,) = destination.wait_for(path, 1)
    signature = delivery.headers["Upstash-Signature"]
    # A receiver still configured with the keys from before the rotation accepts it by its next key ...
    Receiver(before.current, before.next).verify(signature=signature, body="r", url=delivery.url)
    # ... and one that knows neither the old next key nor the new current key refuses it.
    with pytest.raises(SignatureError):
        Receiver(before.current, after.next).verify(signature=signature, body="r", url=delivery.url)


# ---------------------------------------------------------------- restarts and errors


def test_restart_with_path_keeps_a_delayed_message_and_schedules(tmp_path: Path, destination: Destination):
    state = tmp_path / "qstash.sqlite3"
    token = "restart-token"
    path = unique("after-restart")
    options = [*FAST, "--signature-ttl", "2"]
    with LocalQStashServer.start(path=state, token=token, options=options) as first:
        client = QStash(token, base_url=first.url, retry=False)
        keys = client.signing_key.get()
        message_id = client.message.publish(
            url=destination.url(path), body="kept", not_before=int(time.time()) + 4
        ).message_id
        schedule_id = client.schedule.create(destination=destination.url(path), cron="0 0 1 1 *", body="y")
    assert not destination.at(path)
    with LocalQStashServer.start(path=state, token=token, options=options) as second:
        client = QStash(token, base_url=second.url, retry=False)
        assert client.signing_key.get() == keys
        assert client.message.get(message_id).body == "kept"
        assert client.schedule.get(schedule_id).cron == "0 0 1 1 *"
        (delivery,) = destination.wait_for(path, 1, timeout=8)
        assert delivery.headers["Upstash-Message-Id"] == message_id
        receiver = Receiver(keys.current, keys.next)
        receiver.verify(signature=delivery.headers["Upstash-Signature"], body="kept", url=delivery.url)
        claims = jwt.decode(delivery.headers["Upstash-Signature"], options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == 2  # this server's --signature-ttl
        time.sleep(max(0.0, claims["exp"] - time.time()) + 0.1)
        with pytest.raises(SignatureError):
            receiver.verify(signature=delivery.headers["Upstash-Signature"], body="kept", url=delivery.url)
        with pytest.raises(SignatureError, match="expired"):
            verify_with_key(
                keys.current, signature=delivery.headers["Upstash-Signature"], body="kept", url=delivery.url
            )


async def test_a_bad_token_is_refused_with_401(server: LocalQStashServer, destination: Destination):
    wrong = AsyncQStash("not-the-token", base_url=server.url, retry=False)
    with pytest.raises(QStashError, match="401"):
        await wrong.message.publish(url=destination.url("/never"), body="x")
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get("/v2/keys")
        assert response.status_code == 401
        assert response.json() == {"error": "Unauthorized"}
    assert not destination.at("/never")


@pytest.mark.parametrize(
    ("method", "path", "headers", "body"),
    [
        ("POST", "/v2/batch", {}, b"{not json"),
        ("POST", "/v2/batch", {}, b'[{"headers": {}}]'),
        ("POST", "/v2/publish/DEST", {"Upstash-Delay": "soon"}, b"x"),
        ("POST", "/v2/publish/DEST", {"Upstash-Retries": "-1"}, b"x"),
        ("POST", "/v2/publish/DEST", {"Upstash-Not-Before": "tomorrow"}, b"x"),
        ("POST", "/v2/publish/DEST", {"Upstash-Retry-Delay": "__import__('os')"}, b"x"),
        ("POST", "/v2/publish/DEST", {"Upstash-Method": "BREW"}, b"x"),
        ("POST", "/v2/publish/not-a-url", {}, b"x"),
        ("POST", "/v2/schedules/DEST", {"Upstash-Cron": "* * *"}, b""),
        ("POST", "/v2/schedules/DEST", {}, b""),
        ("POST", "/v2/queues", {}, b'{"queueName": "q", "parallelism": "many"}'),
        ("GET", "/v2/events?count=lots", {}, b""),
        ("DELETE", "/v2/messages", {}, b'{"queueName": "serial"}'),
        ("DELETE", "/v2/dlq", {}, b"[1, 2]"),
    ],
)
async def test_malformed_requests_are_400_in_qstash_shape(
    server: LocalQStashServer, destination: Destination, method: str, path: str, headers: dict, body: bytes
):
    auth = {"Authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(base_url=server.url) as http:
        target = path.replace("DEST", destination.url("/malformed"))
        response = await http.request(method, target, headers={**auth, **headers}, content=body)
    assert response.status_code == 400
    assert set(response.json()) == {"error"}
    assert "Traceback" not in response.text


async def test_destinations_off_loopback_are_refused(aclient: AsyncQStash, destination: Destination):
    for url in ("http://example.com/hook", "http://10.0.0.1/hook", "http://[2001:db8::1]/hook"):
        with pytest.raises(QStashError, match=r"400.*loopback"):
            await aclient.message.publish(url=url, body="x")
    with pytest.raises(QStashError, match=r"400.*loopback"):
        await aclient.message.publish(url=destination.url("/ok"), body="x", callback="http://example.com/cb")
    with pytest.raises(QStashError, match=r"400.*loopback"):
        await aclient.schedule.create(destination="http://example.com/", cron="* * * * *")
    with pytest.raises(QStashError, match=r"400.*loopback"):
        await aclient.message.batch([{"url": "http://example.com/", "body": "x"}])


def test_allow_destination_lets_a_named_host_through():
    token = "allow-token"
    with LocalQStashServer.start(token=token, options=["--allow-destination", "hooks.example"]) as running:
        client = QStash(token, base_url=running.url, retry=False)
        # Accepted, and cancelled before it is due: nothing leaves this machine.
        message_id = client.message.publish(url="http://hooks.example/x", body="x", delay="1h").message_id
        client.message.cancel(message_id)
        for _ in range(2):
            client.message.publish(url="http://hooks.example/y", body="y", delay="1h")
        assert client.message.cancel_all() == 2
        with pytest.raises(QStashError, match="400"):
            client.message.publish(url="http://other.example/x", body="x", delay="1h")


# ---------------------------------------------------------------- the pieces QStash's semantics rest on


def test_cron_fields_and_retry_delay_expressions():
    anchor = 1_767_225_600.0  # Thursday 2026-01-01 00:00 UTC
    assert Cron.parse("*/15 * * * *").next_after(anchor) == anchor + 15 * 60
    assert Cron.parse("0 9 * * MON-FRI").next_after(anchor) == anchor + 9 * 3600
    assert Cron.parse("30 2 1 FEB *").next_after(anchor) == anchor + 31 * 86400 + 2.5 * 3600
    # Day of month and day of week both restricted: either matches (Friday the 2nd comes first).
    assert Cron.parse("0 0 15 * 5").next_after(anchor) == anchor + 86400
    assert Cron.parse("CRON_TZ=America/New_York 0 0 * * *").next_after(anchor) == anchor + 5 * 3600
    assert evaluate_retry_delay("1000 * (1 + retried)", 2) == 3000
    assert evaluate_retry_delay("max(10, pow(2, retried))", 5) == 32
