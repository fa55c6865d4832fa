"""The requeue scheduler on a real event loop and thread pool, as kopf runs it: the earliest
request stands, requests made while a run waits for a thread join it, cancel drops it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from dex_operator.requeue import Requeue

DEADLINE_S = 10.0


class Loop:
    """An event loop in its own thread, with a one-thread pool: what kopf's loop and
    executor are to the operator."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def sync(self) -> None:
        """Returns once everything queued on the loop so far has run."""
        done = threading.Event()
        self.loop.call_soon_threadsafe(done.set)
        assert done.wait(DEADLINE_S)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(DEADLINE_S)
        self.pool.shutdown(wait=True)
        self.loop.close()


@pytest.fixture
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


class Runs:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.ran = threading.Condition()

    def __call__(self, namespace: str, name: str) -> None:
        with self.ran:
            self.calls.append((namespace, name))
            self.ran.notify_all()

    def wait_for(self, count: int) -> None:
        with self.ran:
            assert self.ran.wait_for(lambda: len(self.calls) >= count, DEADLINE_S), self.calls


def test_the_earliest_of_several_requests_stands_and_runs_once(loop: Loop) -> None:
    runs = Runs()
    requeue = Requeue(runs)
    requeue.start(loop.loop, loop.pool)
    requeue.after("prod", "churn", 3600)
    requeue.after("prod", "churn", 0.01)
    requeue.after("prod", "churn", 1800)  # later than what stands: ignored
    runs.wait_for(1)
    loop.sync()
    assert runs.calls == [("prod", "churn")]
    assert requeue.pending() == 0  # the hour-long one was replaced, not kept


def test_requests_made_while_a_run_waits_for_a_thread_join_it(loop: Loop) -> None:
    runs = Runs()
    requeue = Requeue(runs)
    requeue.start(loop.loop, loop.pool)
    busy, release = threading.Event(), threading.Event()

    def occupy() -> None:
        busy.set()
        release.wait(DEADLINE_S)

    loop.pool.submit(occupy)  # the only thread is taken
    assert busy.wait(DEADLINE_S)
    for _ in range(5):
        requeue.after("prod", "churn", 0.0)
        loop.sync()  # fired, and waiting for the thread
    requeue.after("prod", "fraud", 0.0)
    loop.sync()
    release.set()
    runs.wait_for(2)
    requeue.after("prod", "churn", 0.0)  # after its run started: a new run
    runs.wait_for(3)
    assert sorted(runs.calls) == [("prod", "churn"), ("prod", "churn"), ("prod", "fraud")]


def test_requests_during_a_run_make_one_more_run_after_it_never_a_concurrent_one() -> None:
    # Two pool threads: a second run of the same DexModel could start if one were free.
    loop = Loop()
    loop.pool = ThreadPoolExecutor(max_workers=2)
    release = threading.Event()
    state = threading.Condition()
    running, most, calls = 0, 0, 0

    def run(namespace: str, name: str) -> None:
        nonlocal running, most, calls
        with state:
            running, calls = running + 1, calls + 1
            most = max(most, running)
            first = calls == 1
            state.notify_all()
        if first:
            release.wait(DEADLINE_S)
        with state:
            running -= 1
            state.notify_all()

    requeue = Requeue(run)
    requeue.start(loop.loop, loop.pool)
    try:
        requeue.after("prod", "churn", 0.0)
        with state:
            assert state.wait_for(lambda: calls == 1, DEADLINE_S)
        for _ in range(5):  # the InferenceService's and route's events, meanwhile
            requeue.after("prod", "churn", 0.0)
            loop.sync()
        assert calls == 1
        release.set()
        with state:
            assert state.wait_for(lambda: calls == 2 and running == 0, DEADLINE_S), calls
        loop.sync()
        assert calls == 2  # one more run for all five requests
        assert most == 1
    finally:
        loop.close()


def test_a_cancelled_request_does_not_run(loop: Loop) -> None:
    runs = Runs()
    requeue = Requeue(runs)
    requeue.start(loop.loop, loop.pool)
    requeue.after("prod", "churn", 0.3)
    requeue.cancel("prod", "churn")
    requeue.after("prod", "fraud", 0.5)  # runs after the cancelled one would have
    runs.wait_for(1)
    assert runs.calls == [("prod", "fraud")]


def test_before_start_requests_are_dropped_not_raised() -> None:
    # kopf's initial listing reconciles every DexModel once the operator runs.
    runs = Runs()
    requeue = Requeue(runs)
    requeue.after("prod", "churn", 0.0)
    requeue.cancel("prod", "churn")
    assert runs.calls == []
    assert requeue.pending() == 0


def test_a_reconcile_that_settles_does_not_drop_an_event_queued_meanwhile(
    loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Gateway applies the route of a promotion while that reconcile is still writing:
    # the route's event queues a run, which is what deletes the old version. The promotion's
    # reconcile then finds its DexModel settled; that must not cancel the queued run.
    from dex_operator import controller, handlers, informer

    runs = Runs()
    requeue = Requeue(runs)
    requeue.start(loop.loop, loop.pool)
    monkeypatch.setattr(handlers, "REQUEUE", requeue)
    monkeypatch.setattr(controller, "reconcile", lambda *a, **k: None)
    settled = {
        "metadata": {"name": "churn", "namespace": "prod", "generation": 2, "resourceVersion": "9"},
        "spec": {"model": {"storageUri": "s3://models/churn/2"}},
        "status": {"phase": "Promoted", "observedGeneration": 2},
    }
    informer.DEXMODELS.observe(settled)
    try:
        assert handlers.requeue_after(settled) is None
        requeue.after("prod", "churn", 0.2)  # the route's event
        handlers.reconcile("prod", "churn")  # the promotion's reconcile ends, settled
        runs.wait_for(1)
    finally:
        informer.DEXMODELS.observe(settled, deleted=True)
    assert runs.calls == [("prod", "churn")]
