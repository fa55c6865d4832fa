"""Delayed re-reconciles (controller-runtime's ``RequeueAfter``), in place of kopf timers.

kopf puts a finalizer on every object while one of its timers runs and takes it off when
the timer's filter stops matching: two writes to each DexModel per rollout for timer
bookkeeping alone, and an asyncio task per object. This scheduler holds one due time per
DexModel on kopf's event loop instead, and runs a due entry in kopf's thread pool (the same
bound as every handler). Entries live in memory only: after a restart kopf's initial listing
reconciles every DexModel, which schedules again whatever is still in motion.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor

log = logging.getLogger("dex_operator")

Key = tuple[str, str]


class Requeue:
    """``after(namespace, name, delay)`` runs ``run(namespace, name)`` once ``delay`` seconds
    have passed; of several requests for one DexModel the earliest stands, and one made while
    a run of it waits for a thread joins that run. As in client-go's workqueue, a DexModel is
    never run twice at once: a request due while its run goes on makes one more run once that
    one ends, however many such requests come. Under load, the InferenceService's and the
    route's events for one rollout step make one reconcile and one status write, not one
    each, and no pool thread sits waiting for another's reconcile of the same DexModel."""

    def __init__(self, run: Callable[[str, str], None]) -> None:
        self._run = run
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: Executor | None = None
        self._due: dict[Key, tuple[float, asyncio.TimerHandle]] = {}
        # All three on the loop thread only. Submitted to the pool and not ended; of those,
        # not started yet; and due again once their run ends.
        self._active: set[Key] = set()
        self._waiting: set[Key] = set()
        self._again: set[Key] = set()

    def start(self, loop: asyncio.AbstractEventLoop, executor: Executor) -> None:
        self._loop, self._executor = loop, executor

    def after(self, namespace: str, name: str, delay: float) -> None:
        """Thread-safe."""
        self._on_loop(self._arm, (namespace, name), max(0.0, delay))

    def cancel(self, namespace: str, name: str) -> None:
        """Thread-safe: nothing more is due for this DexModel (it is gone)."""
        self._on_loop(self._disarm, (namespace, name))

    def _on_loop(self, call: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # not started (or shutting down): startup's listing reconciles everything
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            # From an event handler, on the loop itself: no wake-up through the loop's
            # self-pipe (a syscall per request, most of them from watch events).
            call(*args)
        else:
            loop.call_soon_threadsafe(call, *args)

    def pending(self) -> int:
        return len(self._due)

    def _arm(self, key: Key, delay: float) -> None:
        assert self._loop is not None
        if key in self._waiting:
            return
        due = self._loop.time() + delay
        have = self._due.get(key)
        if have is not None:
            if have[0] <= due:
                return
            have[1].cancel()
        self._due[key] = (due, self._loop.call_at(due, self._fire, key))

    def _disarm(self, key: Key) -> None:
        self._again.discard(key)
        have = self._due.pop(key, None)
        if have is not None:
            have[1].cancel()

    def _fire(self, key: Key) -> None:
        assert self._loop is not None
        self._due.pop(key, None)
        if key in self._waiting:
            return  # the run not started yet will see what this request is for
        if key in self._active:
            self._again.add(key)  # started: it may have read too early, so once more after
            return
        self._active.add(key)
        self._waiting.add(key)
        future = self._loop.run_in_executor(self._executor, self._start, key)
        future.add_done_callback(lambda f: self._ended(key, f))

    def _ended(self, key: Key, future: asyncio.Future[None]) -> None:
        _log_failure(key, future)
        self._active.discard(key)
        if key in self._again:
            self._again.discard(key)
            self._fire(key)

    def _start(self, key: Key) -> None:
        # In a pool thread: from here on a request is for a later run. The discard is queued
        # on the loop before the run reads the informer, and a watch event updates the
        # informer before it queues its request: a request this run absorbs, it also sees.
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._waiting.discard, key)
        self._run(*key)


def _log_failure(key: Key, future: asyncio.Future[None]) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None:  # the run callable reschedules itself; this is only the record
        log.warning("requeued reconcile %s/%s failed: %r", *key, exc)
