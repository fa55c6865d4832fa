"""Inference events as CloudEvents, in the KServe logger's vocabulary.

KServe's logger posts each request and response as a *binary-mode* CloudEvent: the body is the
payload, attributes are ``ce-*`` headers (``ce-type: org.kubeflow.serving.inference.request``
or ``...response``, one shared ``ce-id`` per inference, ``ce-inferenceservicename``,
``ce-namespace``, ``ce-component``, ``ce-endpoint``). The monitor accepts exactly that, so a
cluster can use KServe's own logger. Our :class:`InferenceLogger` batches for efficiency, using
the standard batched content mode (``application/cloudevents-batch+json``).

Logging never slows or fails the request path: events go into a bounded buffer drained by a
background thread. With a spool (``dex_serving.spool``), batches the monitor cannot take wait on
disk and are replayed when it answers again; without one, or when the spool is full, they are
dropped. Every event ends counted: sent, spooled then replayed, or dropped with a reason.
"""

from __future__ import annotations

import collections
import http.client
import logging
import threading
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dex import metrics
from dex_serving import logs
from dex_serving.settings import TransformerSettings
from dex_serving.spool import Spool

log = logging.getLogger("dex.serving.eventlog")

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
_DEFAULTS = TransformerSettings.model_fields  # the batching defaults' one owner
EXTENSIONS = ("inferenceservicename", "namespace", "component", "endpoint", "modelversion")


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event with the KServe logger's extension attributes."""

    model_config = ConfigDict(extra="allow")

    specversion: str = "1.0"
    id: str
    source: str
    type: str
    time: str | None = None
    datacontenttype: str = "application/json"
    inferenceservicename: str | None = None
    namespace: str | None = None
    component: str | None = None
    endpoint: str | None = None
    modelversion: str | None = Field(default=None, description="DEX extension: served version.")
    data: Any = None

    def binary_headers(self) -> dict[str, str]:
        headers = {
            "ce-specversion": self.specversion,
            "ce-id": self.id,
            "ce-source": self.source,
            "ce-type": self.type,
            "content-type": self.datacontenttype,
        }
        if self.time:
            headers["ce-time"] = self.time
        for name in EXTENSIONS:
            value = getattr(self, name)
            if value is not None:
                headers[f"ce-{name}"] = str(value)
        return headers

    @classmethod
    def from_binary(cls, headers: Mapping[str, str], data: Any) -> CloudEvent:
        lowered = {k.lower(): v for k, v in headers.items()}
        attrs: dict[str, Any] = {
            k[3:]: v for k, v in lowered.items() if k.startswith("ce-") and len(k) > 3
        }
        attrs["datacontenttype"] = lowered.get("content-type", "application/json")
        return cls.model_validate({**attrs, "data": data})


def inference_events(
    *,
    source: str,
    service: str,
    version: str | None,
    request: Any,
    response: Any,
    component: str = "transformer",
    namespace: str = "local",
) -> tuple[CloudEvent, CloudEvent]:
    """The request/response pair of one inference, sharing an id as KServe's logger does."""
    event_id = str(uuid.uuid4())
    now = datetime.now(UTC).isoformat()
    common: dict[str, Any] = {
        "id": event_id,
        "source": source,
        "time": now,
        "inferenceservicename": service,
        "namespace": namespace,
        "component": component,
        "endpoint": "default",
        "modelversion": version,
    }
    return (
        CloudEvent(type=REQUEST_TYPE, data=request, **common),
        CloudEvent(type=RESPONSE_TYPE, data=response, **common),
    )


class _Metrics:
    """Process-wide counters (prometheus_client's default registry, which kserve exposes)."""

    _lock = threading.Lock()
    _instance: _Metrics | None = None

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge

        self.dropped = Counter(
            metrics.INFERENCE_EVENTS_DROPPED,
            "Inference events dropped instead of delivered to the monitor.",
            ["reason"],
        )
        self.sent = Counter(metrics.INFERENCE_EVENTS_SENT, "Inference events acknowledged.")
        self.buffered = Gauge(metrics.INFERENCE_EVENTS_BUFFERED, "Events waiting to be sent.")
        self.spooled = Counter(
            metrics.INFERENCE_EVENTS_SPOOLED, "Events written to the spool (monitor unreachable)."
        )
        self.replayed = Counter(
            metrics.INFERENCE_EVENTS_REPLAYED, "Spooled events the monitor acknowledged later."
        )
        self.spool_bytes = Gauge(metrics.INFERENCE_SPOOL_BYTES, "Bytes held in the spool.")

    @classmethod
    def get(cls) -> _Metrics:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance


class InferenceLogger:
    """Bounded buffer + one sender thread posting batches to the monitor (+ optional spool)."""

    def __init__(
        self,
        url: str,
        *,
        capacity: int = 10_000,
        batch_size: int = _DEFAULTS["log_batch"].default,
        max_attempts: int = 5,
        timeout_s: float = 5.0,
        linger_s: float = _DEFAULTS["log_linger_s"].default,
        spool: Spool | None = None,
        probe_s: float = 1.0,
    ) -> None:
        self.url = url
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.max_attempts = max_attempts
        self.spool = spool
        self.probe_s = probe_s
        self.metrics = _Metrics.get()
        # Events wait already serialised (see log()) in a deque, not a queue.Queue: a put on
        # a Queue wakes the waiting sender for every event, and that thread switch took the
        # GIL from the request that logged it. The sender sleeps a linger instead, woken
        # early only by a full batch, flush() or close().
        self.capacity = capacity
        self._buffer: collections.deque[str] = collections.deque()
        self._wake = threading.Event()
        self._client = _Poster(url, timeout_s)
        self._inflight = 0
        self._idle = threading.Condition()
        self._stop = threading.Event()
        # Set while the monitor is known unreachable: fresh batches go straight to the spool
        # (no retry delays that would let the memory buffer overflow), and only a replay probe
        # every `probe_s` asks whether it is back.
        self._down_since: float | None = None
        self._last_probe = 0.0
        if spool is not None:
            self.metrics.spool_bytes.set(spool.size_bytes)
        self._thread = threading.Thread(target=self._run, name="dex-event-sender", daemon=True)
        self._thread.start()

    def log(self, *events: CloudEvent) -> None:
        """Never blocks: a full buffer drops (and counts) the event. Each event is serialised
        here, in the request's thread (pydantic-core, tens of microseconds): serialising a
        whole batch in the sender thread held the GIL and CPU for milliseconds at a time,
        which requests served meanwhile paid in their tail latency."""
        buffer = self._buffer
        for event in events:
            if len(buffer) >= self.capacity:
                self.metrics.dropped.labels(reason="buffer_full").inc()
            else:
                buffer.append(event.model_dump_json(exclude_none=True))
        if len(buffer) >= self.batch_size or self.linger_s <= 0:
            self._wake.set()
        self.metrics.buffered.set(len(buffer))

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything buffered has been delivered, spooled or dropped."""
        deadline = time.monotonic() + timeout_s
        self._wake.set()  # no lingering: send what is there
        with self._idle:
            while self._buffer or self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.05))
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        self.flush(timeout_s)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)
        self._client.close()

    def _next_batch(self) -> list[str]:
        if len(self._buffer) < self.batch_size and not self._stop.is_set():
            # Linger: one POST per inference would cost the serving process about as much
            # CPU (and GIL) as the inference itself. A wake-up set after this clear() is
            # for events appended after it, which the drain below takes or the next wait sees.
            self._wake.wait(self.linger_s if self.linger_s > 0 else 0.1)
            self._wake.clear()
        buffer = self._buffer
        with self._idle:  # flush() must never see an empty buffer and nothing in flight
            batch = [buffer.popleft() for _ in range(min(self.batch_size, len(buffer)))]
            self._inflight = len(batch)
        return batch

    def _run(self) -> None:
        while not self._stop.is_set():
            self._replay()
            batch = self._next_batch()
            if not batch:
                continue
            try:
                self._deliver(batch)
            finally:
                with self._idle:
                    self._inflight = 0
                    self._idle.notify_all()
                self.metrics.buffered.set(len(self._buffer))

    def _post(self, body: bytes) -> int | None:
        """The monitor's status code, or None when it could not be reached."""
        try:
            status, text = self._client.post(body)
        except (OSError, http.client.HTTPException) as exc:
            log.debug(logs.kv("event delivery failed", error=repr(exc)))
            return None
        if 400 <= status < 500:
            # The monitor rejected the events themselves: retrying cannot help.
            log.warning(logs.kv("events rejected", status=status, body=text[:200]))
        return status

    def _replay(self) -> None:
        """Send spooled batches, oldest first, while the monitor takes them."""
        if self.spool is None:
            return
        if self._down_since is not None and time.monotonic() - self._last_probe < self.probe_s:
            return
        while not self._stop.is_set() and (batch := self.spool.oldest()) is not None:
            self._last_probe = time.monotonic()
            status = self._post(batch.body)
            if status is None or status >= 500:
                self._mark_down()
                return
            self.spool.remove(batch)
            self.metrics.spool_bytes.set(self.spool.size_bytes)
            if status < 400:
                self.metrics.replayed.inc(batch.events)
            else:
                self.metrics.dropped.labels(reason="rejected").inc(batch.events)
            self._mark_up()

    def _settled(self, body: bytes, events: int) -> bool:
        """Try a few times; True once the monitor answered (acknowledged or rejected)."""
        delay = 0.1
        for attempt in range(1, self.max_attempts + 1):
            status = self._post(body)
            if status is not None and status < 400:
                self.metrics.sent.inc(events)
                self._mark_up()
                return True
            if status is not None and status < 500:
                self.metrics.dropped.labels(reason="rejected").inc(events)
                return True
            if self._stop.is_set() or attempt == self.max_attempts:
                break
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        return False

    def _mark_down(self) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning(logs.kv("monitor unreachable", url=self.url, spool=self.spool is not None))

    def _mark_up(self) -> None:
        if self._down_since is not None:
            log.info(
                logs.kv(
                    "monitor reachable again",
                    url=self.url,
                    down_s=round(time.monotonic() - self._down_since, 1),
                )
            )
            self._down_since = None

    def _deliver(self, batch: list[str]) -> None:
        body = ("[" + ",".join(batch) + "]").encode()
        # Known down with a spool: straight to disk; the replay probe finds out when it is back.
        skip = self._down_since is not None and self.spool is not None
        if not skip and self._settled(body, len(batch)):
            return
        self._mark_down()
        if self.spool is None:
            log.warning(logs.kv("events dropped after retries", count=len(batch), url=self.url))
            self.metrics.dropped.labels(reason="send_failed").inc(len(batch))
        elif self.spool.put(body, len(batch)):
            self.metrics.spooled.inc(len(batch))
            self.metrics.spool_bytes.set(self.spool.size_bytes)
        else:
            log.warning(logs.kv("spool full, events dropped", count=len(batch), url=self.url))
            self.metrics.dropped.labels(reason="spool_full").inc(len(batch))


class _Poster:
    """POSTs batches over one kept-alive connection (the sender is one thread).

    ``http.client``, not httpx: the sender shares the GIL with the requests being served, and
    httpx spent about as much CPU per POST (pool bookkeeping, header models) as a request
    itself; those bursts showed in the served requests' p99.
    """

    def __init__(self, url: str, timeout_s: float) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"monitor URL {url!r}: expected http(s)://host[:port]/path")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._timeout = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = kind(self._host, self._port, timeout=self._timeout)
        return self._conn

    def post(self, body: bytes) -> tuple[int, str]:
        # A kept-alive connection the monitor closed while idle fails at once: one retry on a
        # fresh one. Events carry ids the monitor stores once, so a replay adds nothing.
        reused = self._conn is not None
        try:
            return self._exchange(body)
        except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
            self.close()
            if not reused:
                raise
            return self._exchange(body)
        except BaseException:
            self.close()
            raise

    def _exchange(self, body: bytes) -> tuple[int, str]:
        conn = self._connection()
        conn.request("POST", self._path, body=body, headers={"content-type": BATCH_CONTENT_TYPE})
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")
        if response.will_close:
            self.close()
        return response.status, text

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
