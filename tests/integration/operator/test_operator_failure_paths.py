"""Failure paths of the operator (a real ``python -m dex_operator`` process) against the real API
server, each judged by what a user sees: the DexModel's phase and conditions, the Events
``kubectl describe`` lists, and what did *not* change (the InferenceService, the rollout's
step).

1. An InferenceService of the same name that the DexModel does not own is left alone and
   reported (condition Ready=False reason NotOwned, one Warning Event).
2. The owned InferenceService edited or deleted out of band is restored / recreated; the
   rollout neither skips nor repeats a step.
3. A DexModel deleted while the operator is down: its InferenceService is garbage-collected
   and the restarted operator reports no error.
4. The model registry (a real MLflow server) unreachable mid-rollout: condition and Event
   quote the error, the InferenceService stays as it was; when it answers again the
   rollout goes on from the same step and the condition clears.
5. The drift provider unreachable mid-rollout: the gate fails naming the URL, the rollout
   holds once and rolls back at failureLimit.
6. The registry alias moving mid-rollout: the rollout restarts toward the new version.

Each test has its own namespace and its own operator watching only it, so the operator's
metrics (reconciles, errors) are this test's. The KServe controller is stood in for by
``KServeStandIn``; ``history`` is the deduplicated sequence of canary weights KServe was
asked for."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
from opkit import (
    DriftEndpoint,
    apply,
    condition,
    dexmodel,
    events_for,
    final_history,
    get_json,
    isvc_name,
    kubectl,
    mlflow_post,
    only_isvc,
    owned_isvcs,
    scratch_namespace,
    uri_version,
)
from prometheus_client import make_wsgi_app
from prometheus_client.parser import text_string_to_metric_families

from dex_testing.devcluster import eventually
from dex_testing.kserve_standin import KServeStandIn
from dex_testing.mlflow_server import mlflow_server
from dex_testing.operator_process import OperatorProcess
from dexctl.processes import free_ports

pytestmark = [
    pytest.mark.integration,
    pytest.mark.controlplane,
    pytest.mark.xdist_group(name="controlplane"),
]

V1, V2 = "s3://models/failure/1", "s3://models/failure/2"
RECONCILES = "dex_operator_reconcile_duration_seconds_count"
ERRORS = "dex_operator_reconcile_errors_total"
# Fields that say where a rollout stands; an out-of-band event must leave them as they were.
ROLLOUT_FIELDS = (
    "phase",
    "stableVersion",
    "canaryVersion",
    "canaryWeight",
    "currentStep",
    "stepStartedAt",
    "failedChecks",
)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def ns(kubeconfig: Path, crds: None) -> Iterator[str]:
    """A namespace per test: its Events and objects are this test's alone."""
    with scratch_namespace(kubeconfig, "dex-fail") as name:
        yield name


StartOperator = Callable[..., OperatorProcess]


@pytest.fixture
def start_operator(
    operator_factory: Callable[..., OperatorProcess], ns: str, kserve: KServeStandIn
) -> Iterator[StartOperator]:
    """Operators watching only ``ns``; the ones a test started are stopped when it ends."""
    started: list[OperatorProcess] = []

    def start(**env: str) -> OperatorProcess:
        proc = operator_factory(DEX_NAMESPACES=json.dumps([ns]), **env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


class TcpGate:
    """A TCP forwarder in front of a server. ``stop`` makes its address refuse connections,
    as the server's own would once stopped; ``start`` serves it again on the same port. The
    server itself (and what it stores) is untouched."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        (self.port,) = free_ports(1)
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)  # accept() wakes up to notice stop()
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for conn in (src, dst):
                conn.close()
            with self._lock:
                self._conns -= {src, dst}


@pytest.fixture(scope="module")
def mlflow_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


def register(mlflow_url: str, model: str, versions: int) -> None:
    """``versions`` versions of ``model`` (storage s3://dex-models/<model>/<n>), champion -> 1;
    through the REST API, as the training pipeline's client would."""
    mlflow_post(mlflow_url, "registered-models/create", {"name": model})
    for v in range(1, versions + 1):
        mlflow_post(
            mlflow_url,
            "model-versions/create",
            {"name": model, "source": f"s3://dex-models/{model}/{v}"},
        )
    move_alias(mlflow_url, model, "1")


def move_alias(mlflow_url: str, model: str, version: str) -> None:
    mlflow_post(
        mlflow_url,
        "registered-models/alias",
        {"name": model, "alias": "champion", "version": version},
    )


# --------------------------------------------------------------------------- helpers


def metric_total(op: OperatorProcess, sample: str) -> float:
    """A sample summed over its labels, from the operator's /metrics."""
    url = f"http://127.0.0.1:{op.env['DEX_METRICS_PORT']}/metrics"
    text = httpx.get(url, timeout=5).raise_for_status().text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == sample
    )


def more_reconciles(op: OperatorProcess, count: int, what: str) -> None:
    """Wait until the operator has reconciled ``count`` more times: long enough to have
    acted, had it been going to."""
    base = metric_total(op, RECONCILES)
    eventually(
        lambda: metric_total(op, RECONCILES) >= base + count,
        timeout=30,
        what=f"{count} more reconciles ({what})",
    )


def dm_get(kubeconfig: Path, ns: str, name: str) -> dict[str, Any]:
    return dict(get_json(kubeconfig, "dm", name, "-n", ns))


def status_of(kubeconfig: Path, ns: str, name: str) -> dict[str, Any]:
    return dict(dm_get(kubeconfig, ns, name).get("status") or {})


def rollout_point(status: dict[str, Any]) -> dict[str, Any]:
    return {key: status.get(key) for key in ROLLOUT_FIELDS}


def wait_status(
    kubeconfig: Path,
    ns: str,
    name: str,
    check: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = 30,
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        status = status_of(kubeconfig, ns, name)
        return status if check(status) else None

    found: dict[str, Any] = eventually(probe, timeout=timeout, what=f"{name}: {what}")
    return found


def holding(step: int, weight: int, version: str) -> Callable[[dict[str, Any]], bool]:
    """The canary ``version`` holds step ``step`` (0-based) at ``weight``%."""
    return lambda s: (
        s.get("phase") == "Progressing"
        and s.get("canaryVersion") == version
        and s.get("currentStep") == step
        and s.get("canaryWeight") == weight
        and s.get("stepStartedAt") is not None
    )


def isvc_get(kubeconfig: Path, ns: str, name: str, kind: str = "isvc") -> dict[str, Any] | None:
    result = kubectl(kubeconfig, "get", kind, name, "-n", ns, "-o", "json", check=False)
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return None
    return dict(json.loads(result.stdout))


def serving_objects(kubeconfig: Path, ns: str, name: str) -> dict[str, Any]:
    """The DexModel's InferenceServices and route, by name: spec and generation each."""
    out: dict[str, Any] = {}
    for kind in ("isvc", "httproute"):
        listed = json.loads(
            kubectl(
                kubeconfig,
                "get",
                kind,
                "-n",
                ns,
                "-l",
                f"dex.dataenginex.io/dexmodel={name}",
                "-o",
                "json",
            ).stdout
        )
        for item in listed["items"]:
            meta = item["metadata"]
            out[f"{kind}/{meta['name']}"] = (item["spec"], meta["generation"])
    return out


def events(kubeconfig: Path, ns: str, name: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in events_for(kubeconfig, ns, name) if e["reason"] == reason]


def wait_events(
    kubeconfig: Path, ns: str, name: str, reason: str, count: int = 1
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = eventually(
        lambda: (found := events(kubeconfig, ns, name, reason)) and len(found) >= count and found,
        timeout=30,
        what=f"{name}: {count} {reason} Event(s)",
    )
    return found


def patch_rollout(kubeconfig: Path, ns: str, name: str, **fields: Any) -> None:
    patch = json.dumps({"spec": {"rollout": fields}})
    kubectl(kubeconfig, "patch", "dm", name, "-n", ns, "--type=merge", "-p", patch)


def set_uri(kubeconfig: Path, ns: str, name: str, uri: str) -> None:
    patch = json.dumps({"spec": {"model": {"storageUri": uri}}})
    kubectl(kubeconfig, "patch", "dm", name, "-n", ns, "--type=merge", "-p", patch)


def alias_model(name: str, ns: str, model: str, registry_url: str | None = None) -> dict[str, Any]:
    """A DexModel following ``model``'s champion alias; holds of an hour (tests shorten the
    interval when the rollout may go on), no analysis gates."""
    obj = dexmodel(name, ns, steps=[10, 50], interval="1h", drift_threshold=None)
    obj["spec"]["model"] = {"name": model, "alias": "champion"}
    if registry_url:
        obj["spec"]["model"]["registryUrl"] = registry_url
    return obj


def reconciled(kubeconfig: Path, ns: str, name: str, change: Callable[[], None]) -> None:
    """Make a spec ``change`` and wait until the operator has reconciled it."""
    change()
    generation = dm_get(kubeconfig, ns, name)["metadata"]["generation"]
    wait_status(
        kubeconfig,
        ns,
        name,
        lambda s: s.get("observedGeneration") == generation,
        f"generation {generation} observed",
    )


def no_errors_logged(op: OperatorProcess) -> list[str]:
    """The operator's log lines at level ERROR or above, or carrying a traceback."""
    bad = []
    for line in op.log_path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            if "Traceback" in line:
                bad.append(line)
            continue
        level = str(record.get("severity") or record.get("levelname") or "").upper()
        # kopf logs its own retried API calls (429 while the API server warms up) as errors.
        retried = "; will retry:" in str(record.get("message"))
        if (level in ("ERROR", "CRITICAL") and not retried) or "Traceback" in line:
            bad.append(line)
    return bad


# --------------------------------------------------------------------------- 1. not owned


def test_isvc_not_owned_is_left_alone_and_reported(
    kubeconfig: Path, ns: str, start_operator: StartOperator, kserve: KServeStandIn
) -> None:
    name = "taken"
    # Someone else's InferenceService holds the name this DexModel's version 1 would take.
    taken = isvc_name(name, V1)
    foreign = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": taken, "namespace": ns, "labels": {"team": "fraud"}},
        "spec": {
            "predictor": {
                "containers": [
                    {"name": "kserve-container", "image": "example.com/fraud:7", "args": ["x"]}
                ]
            }
        },
    }
    kubectl(kubeconfig, "create", "-f", "-", stdin=json.dumps(foreign))
    before = isvc_get(kubeconfig, ns, taken)
    assert before is not None
    op = start_operator()
    assert (
        apply(kubeconfig, dexmodel(name, ns, storage_uri=V1, drift_threshold=None)).returncode == 0
    )

    message = f"InferenceService {taken} exists and is not owned by this DexModel"
    status = wait_status(
        kubeconfig,
        ns,
        name,
        lambda s: (condition({"status": s}, "Ready") or {}).get("reason") == "NotOwned",
        "Ready condition NotOwned",
    )
    ready = condition({"status": status}, "Ready")
    assert ready is not None
    assert (ready["status"], ready["message"]) == ("False", message)
    assert status["phase"] == "Pending"
    assert status["message"] == message
    (warning,) = wait_events(kubeconfig, ns, name, "NotOwned")
    assert (warning["type"], warning["message"]) == ("Warning", message)

    # The operator keeps looking (it takes over once the other one is gone) and touches
    # nothing meanwhile; the warning is posted once, not at every resync.
    more_reconciles(op, 6, "NotOwned")
    after = isvc_get(kubeconfig, ns, taken)
    assert after is not None
    assert json.dumps(after["spec"], sort_keys=True) == json.dumps(before["spec"], sort_keys=True)
    for key in ("generation", "labels", "annotations", "ownerReferences", "uid"):
        assert after["metadata"].get(key) == before["metadata"].get(key), key
    assert len(events(kubeconfig, ns, name, "NotOwned")) == 1
    assert metric_total(op, ERRORS) == 0
    # Nothing written past the refused create: no route to an InferenceService not ours.
    assert isvc_get(kubeconfig, ns, name, "httproute") is None

    # Its owner deletes it: the DexModel now creates and owns its own.
    kubectl(kubeconfig, "delete", "isvc", taken, "-n", ns, "--timeout=30s")
    status = wait_status(kubeconfig, ns, name, lambda s: s.get("phase") == "Promoted", "Promoted")
    assert (condition({"status": status}, "Ready") or {}).get("status") == "True"
    owned = isvc_get(kubeconfig, ns, taken)
    assert owned is not None
    (ref,) = owned["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"], ref["controller"]) == ("DexModel", name, True)


# ------------------------------------------------------------- 2. edited / deleted out of band


def test_isvc_edited_or_deleted_out_of_band_is_restored(
    kubeconfig: Path, ns: str, start_operator: StartOperator, kserve: KServeStandIn
) -> None:
    name = "tampered"
    start_operator()
    obj = dexmodel(name, ns, storage_uri=V1, steps=[10, 50], interval="1h", drift_threshold=None)
    assert apply(kubeconfig, obj).returncode == 0
    wait_status(kubeconfig, ns, name, lambda s: s.get("phase") == "Promoted", "Promoted")
    set_uri(kubeconfig, ns, name, V2)
    # An hour's hold: the rollout stands still at step 1 while the InferenceService is
    # tampered with, whatever the machine's speed.
    point = rollout_point(
        wait_status(kubeconfig, ns, name, holding(0, 10, uri_version(V2)), "holding step 1")
    )
    stable = isvc_name(name, V1)
    desired = isvc_get(kubeconfig, ns, stable)
    desired_route = isvc_get(kubeconfig, ns, name, "httproute")
    assert desired is not None
    assert desired_route is not None
    assert [r["weight"] for r in desired_route["spec"]["rules"][0]["backendRefs"]] == [90, 10]

    def restored() -> bool:
        now = isvc_get(kubeconfig, ns, stable)
        route = isvc_get(kubeconfig, ns, name, "httproute")
        return (
            now is not None
            and now["spec"] == desired["spec"]
            and route is not None
            and route["spec"] == desired_route["spec"]
        )

    # A field the operator manages, the canary's weight on the route, edited by hand.
    kubectl(
        kubeconfig,
        "patch",
        "httproute",
        name,
        "-n",
        ns,
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/rules/0/backendRefs/1/weight","value":90}]',
    )
    eventually(restored, timeout=30, what="canary weight restored to 10")
    # The stable predictor's arguments edited by hand.
    kubectl(
        kubeconfig,
        "patch",
        "isvc",
        stable,
        "-n",
        ns,
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/predictor/containers/0/args/1",'
        '"value":"--model=s3://elsewhere/9"}]',
    )
    eventually(restored, timeout=30, what="predictor args restored")
    # Deleted by hand: recreated, owned, at the same step.
    kubectl(kubeconfig, "delete", "isvc", stable, "-n", ns, "--timeout=30s")

    def recreated() -> bool:
        now = isvc_get(kubeconfig, ns, stable)
        return (
            now is not None
            and now["metadata"]["uid"] != desired["metadata"]["uid"]
            and now["spec"] == desired["spec"]
            and now["metadata"]["ownerReferences"] == desired["metadata"]["ownerReferences"]
        )

    eventually(recreated, timeout=30, what="InferenceService recreated")
    assert rollout_point(status_of(kubeconfig, ns, name)) == point
    assert len(events(kubeconfig, ns, name, "StepStarted")) == 1

    # The rollout goes on from where it stood: every step once, none skipped.
    patch_rollout(kubeconfig, ns, name, interval="1s")
    status = wait_status(kubeconfig, ns, name, lambda s: s.get("phase") == "Promoted", "Promoted")
    assert status["stableVersion"] == uri_version(V2)
    # The stand-in may or may not have seen the hand-set 90% before the operator undid it.
    history = [w for w in final_history(kserve, ns, name) if w != 90]
    assert [w for i, w in enumerate(history) if i == 0 or history[i - 1] != w] == [
        None,
        0,
        10,
        50,
        None,
    ]
    assert len(events(kubeconfig, ns, name, "StepStarted")) == 2


# ------------------------------------------------------- 3. deleted while the operator is down


def test_dexmodel_deleted_while_operator_down(
    kubeconfig: Path, ns: str, start_operator: StartOperator, kserve: KServeStandIn
) -> None:
    name, hold = "orphan", "dex-test.dataenginex.io/hold"
    op = start_operator()
    obj = dexmodel(name, ns, storage_uri=V1, drift_threshold=None)
    assert apply(kubeconfig, obj).returncode == 0
    wait_status(kubeconfig, ns, name, lambda s: s.get("phase") == "Promoted", "Promoted")
    isvc = isvc_name(name, V1)
    # The test's own finalizer keeps the InferenceService visible, terminating, after the
    # garbage collector deleted it: so the restarted operator sees it whatever the timing.
    kubectl(
        kubeconfig,
        "patch",
        "isvc",
        isvc,
        "-n",
        ns,
        "--type=merge",
        "-p",
        json.dumps({"metadata": {"finalizers": [hold]}}),
    )
    op.stop()

    kubectl(kubeconfig, "delete", "dm", name, "-n", ns, "--wait=false")
    # Nothing of the operator's holds the DexModel: it goes at once, and its InferenceService
    # (ownerReference) is garbage-collected by Kubernetes, operator or not.
    eventually(
        lambda: kubectl(kubeconfig, "get", "dm", name, "-n", ns, check=False).returncode != 0,
        timeout=30,
        what="DexModel gone",
    )
    eventually(
        lambda: ((isvc_get(kubeconfig, ns, isvc) or {}).get("metadata") or {}).get(
            "deletionTimestamp"
        ),
        timeout=60,
        what="InferenceService deleted by the garbage collector",
    )

    restarted = start_operator()
    # It lists the orphaned, terminating InferenceService (its on.event handler reconciles
    # the owner, which is gone) ...
    eventually(
        lambda: metric_total(restarted, RECONCILES) >= 1,
        timeout=30,
        what="restarted operator reconciled the orphan's owner",
    )
    seen = metric_total(restarted, RECONCILES)
    kubectl(
        kubeconfig,
        "patch",
        "isvc",
        isvc,
        "-n",
        ns,
        "--type=merge",
        "-p",
        '{"metadata":{"finalizers":null}}',
    )
    # ... and its DELETED event, recreating nothing, raising nothing.
    eventually(
        lambda: isvc_get(kubeconfig, ns, isvc) is None, timeout=30, what="InferenceService gone"
    )
    eventually(
        lambda: metric_total(restarted, RECONCILES) > seen,
        timeout=30,
        what="restarted operator handled the DELETED event",
    )
    assert isvc_get(kubeconfig, ns, isvc) is None
    assert metric_total(restarted, ERRORS) == 0
    assert no_errors_logged(restarted) == []
    assert restarted.child is not None
    assert restarted.child.proc.poll() is None


# ------------------------------------------------------------- 4. registry unreachable


def test_registry_unreachable_mid_rollout(
    kubeconfig: Path,
    ns: str,
    start_operator: StartOperator,
    kserve: KServeStandIn,
    mlflow_url: str,
) -> None:
    name, model = "outage", f"fp-outage-{uuid.uuid4().hex[:6]}"
    register(mlflow_url, model, 2)
    gate = TcpGate(int(mlflow_url.rsplit(":", 1)[1]))
    gate.start()
    op = start_operator(DEX_MLFLOW_URL=gate.url, DEX_HTTP_TIMEOUT="2")
    try:
        assert apply(kubeconfig, alias_model(name, ns, model)).returncode == 0
        wait_status(
            kubeconfig,
            ns,
            name,
            lambda s: s.get("phase") == "Promoted" and s.get("stableVersion") == "1",
            "v1 Promoted",
        )
        move_alias(mlflow_url, model, "2")
        point = rollout_point(wait_status(kubeconfig, ns, name, holding(0, 10, "2"), "step 1"))
        before = serving_objects(kubeconfig, ns, name)
        assert len(before) == 3  # stable's and the canary's InferenceServices, the route
        history = kserve.history(ns, name)

        gate.stop()  # the registry goes away mid-rollout
        prefix = f"MLflow unreachable at {gate.url}: "
        status = wait_status(
            kubeconfig,
            ns,
            name,
            lambda s: (condition({"status": s}, "Degraded") or {}).get("reason") == "RegistryError",
            "Degraded RegistryError",
        )
        degraded = condition({"status": status}, "Degraded")
        assert degraded is not None
        assert degraded["status"] == "True"
        assert degraded["message"].startswith(prefix), degraded
        assert status["message"] == degraded["message"]
        warnings = wait_events(kubeconfig, ns, name, "RegistryError")
        assert {e["type"] for e in warnings} == {"Warning"}, warnings
        assert degraded["message"] in {e["message"] for e in warnings}, warnings
        # The hold ends now: only the outage holds the rollout. The registry is asked again
        # at every reconcile; none changes anything: stable (and the canary at its step)
        # keep serving exactly as before.
        reconciled(kubeconfig, ns, name, lambda: patch_rollout(kubeconfig, ns, name, interval="1s"))
        posted = len(events(kubeconfig, ns, name, "RegistryError"))
        more_reconciles(op, 6, "registry down")
        assert serving_objects(kubeconfig, ns, name) == before
        status = status_of(kubeconfig, ns, name)
        assert rollout_point(status) == point
        assert (condition({"status": status}, "Degraded") or {}).get("reason") == "RegistryError"
        assert kserve.history(ns, name) == history
        assert metric_total(op, ERRORS) == 0
        # Events when something changes (an error, a generation), not at every reconcile.
        messages = [e["message"] for e in events(kubeconfig, ns, name, "RegistryError")]
        assert len(messages) == posted, messages
        assert all(m.startswith(prefix) for m in messages), messages

        # Long holds again, so what the registry's return does is seen before any step.
        reconciled(kubeconfig, ns, name, lambda: patch_rollout(kubeconfig, ns, name, interval="1h"))
        gate.start()  # back: the error clears, the rollout stands where it stood
        status = wait_status(
            kubeconfig,
            ns,
            name,
            lambda s: (condition({"status": s}, "Degraded") or {}).get("status") == "False",
            "Degraded cleared",
        )
        assert rollout_point(status) == point
        assert not status["message"].startswith("MLflow"), status["message"]
        # ... and goes on: every step once.
        patch_rollout(kubeconfig, ns, name, interval="1s")
        wait_status(
            kubeconfig,
            ns,
            name,
            lambda s: s.get("phase") == "Promoted" and s.get("stableVersion") == "2",
            "v2 Promoted",
        )
        assert final_history(kserve, ns, name) == [None, 0, 10, 50, None]
        assert len(events(kubeconfig, ns, name, "StepStarted")) == 2
        assert len(events(kubeconfig, ns, name, "RolloutStarted")) == 1
    finally:
        gate.stop()


# --------------------------------------------------------- 5. drift provider unreachable


class VanishingDrift(DriftEndpoint):
    """The drift endpoint, gone for good (its port refusing connections) once it has
    answered ``answers`` scrapes."""

    def __init__(self, answers: int) -> None:
        super().__init__()
        self.server.server_close()
        inner = make_wsgi_app(self.registry)
        self.answered = 0
        self.gone = threading.Event()

        def app(environ: Any, start_response: Any) -> Any:
            body = inner(environ, start_response)
            self.answered += 1
            if self.answered == answers:
                threading.Thread(target=self._vanish, daemon=True).start()
            return body

        class Quiet(WSGIRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

        self.server: WSGIServer = make_server("127.0.0.1", self.port, app, handler_class=Quiet)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _vanish(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.gone.set()


def test_drift_provider_unreachable_mid_rollout(
    kubeconfig: Path, ns: str, start_operator: StartOperator, kserve: KServeStandIn
) -> None:
    name = "blind"
    # Answers step 1's analysis (drift low: passes), then is gone for step 2's.
    drift = VanishingDrift(answers=1)
    drift.thread.start()
    drift.set(name, uri_version(V2), 0.05)
    start_operator(DEX_MONITOR_URL=drift.url, DEX_HTTP_TIMEOUT="2")
    try:
        obj = dexmodel(name, ns, storage_uri=V1, steps=[10, 50], interval="1s", failure_limit=2)
        assert apply(kubeconfig, obj).returncode == 0
        wait_status(kubeconfig, ns, name, lambda s: s.get("phase") == "Promoted", "Promoted")
        set_uri(kubeconfig, ns, name, V2)
        status = wait_status(
            kubeconfig, ns, name, lambda s: s.get("phase") == "RolledBack", "RolledBack", 60
        )
        assert drift.gone.is_set()
        unreachable = f"DEX monitor unreachable at {drift.url}: "
        assert status["stableVersion"] == uri_version(V1)
        assert "canaryVersion" not in status
        (result,) = status["lastAnalysis"]
        assert (result["name"], result["passed"]) == ("drift", False)
        assert "value" not in result
        assert result["message"].startswith(unreachable), result
        degraded = condition({"status": status}, "Degraded")
        assert degraded is not None
        assert (degraded["status"], degraded["reason"]) == ("True", "AnalysisFailed")
        assert unreachable in degraded["message"]
        assert status["message"] == degraded["message"]
        # Step 1 passed; step 2's gate failed twice (failureLimit 2): held once, then back.
        (passed,) = events(kubeconfig, ns, name, "StepPassed")
        assert passed["message"] == "step 1 at 10% passed analysis"
        failed = wait_events(kubeconfig, ns, name, "AnalysisFailed", 2)
        assert len(failed) == 2
        for n, event in enumerate(sorted(failed, key=lambda e: e["message"][-4:]), 1):
            assert event["type"] == "Warning"
            assert event["message"].startswith(
                "step 2 at 50%: drift (drift) = no data, threshold 0.3: " + unreachable
            ), event
            assert event["message"].endswith(f"(failure {n}/2)"), event
        (rolled,) = wait_events(kubeconfig, ns, name, "RolledBack")
        assert rolled["type"] == "Warning"
        assert unreachable in rolled["message"]
        assert final_history(kserve, ns, name) == [None, 0, 10, 50, None]
        isvc = only_isvc(kubeconfig, ns, name, isvc_name(name, V1))
        assert f"--model={V1}" in isvc["spec"]["predictor"]["containers"][0]["args"]
    finally:
        if not drift.gone.is_set():
            drift._vanish()


# --------------------------------------------------------------- 6. alias moves mid-rollout


def test_alias_moves_mid_rollout_restarts_toward_new_version(
    kubeconfig: Path,
    ns: str,
    start_operator: StartOperator,
    kserve: KServeStandIn,
    mlflow_url: str,
) -> None:
    name, model = "moving", f"fp-moving-{uuid.uuid4().hex[:6]}"
    register(mlflow_url, model, 3)
    start_operator(DEX_MLFLOW_URL=mlflow_url)
    assert apply(kubeconfig, alias_model(name, ns, model)).returncode == 0
    wait_status(
        kubeconfig,
        ns,
        name,
        lambda s: s.get("phase") == "Promoted" and s.get("stableVersion") == "1",
        "v1 Promoted",
    )
    move_alias(mlflow_url, model, "2")
    wait_status(kubeconfig, ns, name, holding(0, 10, "2"), "v2 holding step 1")

    move_alias(mlflow_url, model, "3")  # the promotion pipeline picks another version
    (restarted,) = wait_events(kubeconfig, ns, name, "RolloutRestarted")
    assert (restarted["type"], restarted["message"]) == ("Normal", "canary replaced by version 3")
    status = wait_status(kubeconfig, ns, name, holding(0, 10, "3"), "v3 holding step 1")
    assert status["stableVersion"] == "1"
    # v2's InferenceService went with the route's last reference to it; v3 is the canary.
    eventually(
        lambda: owned_isvcs(kubeconfig, ns, name) == [f"{name}-v1", f"{name}-v3"],
        timeout=15,
        what="v1 and v3 only",
    )
    canary = isvc_get(kubeconfig, ns, f"{name}-v3")
    assert canary is not None
    assert f"--model=models:/{model}/3" in canary["spec"]["predictor"]["containers"][0]["args"]
    route = isvc_get(kubeconfig, ns, name, "httproute")
    assert route is not None
    assert [(r["name"], r["weight"]) for r in route["spec"]["rules"][0]["backendRefs"]] == [
        (f"{name}-v1-predictor", 90),
        (f"{name}-v3-predictor", 10),
    ]

    patch_rollout(kubeconfig, ns, name, interval="1s")
    status = wait_status(
        kubeconfig,
        ns,
        name,
        lambda s: s.get("phase") == "Promoted" and s.get("stableVersion") == "3",
        "v3 Promoted",
    )
    # v2 reached 10% and was replaced at 0%; v3 then took every step once.
    assert final_history(kserve, ns, name) == [None, 0, 10, 0, 10, 50, None]
    assert len(events(kubeconfig, ns, name, "RolloutStarted")) == 1
    assert len(events(kubeconfig, ns, name, "RolloutRestarted")) == 1
    assert len(events(kubeconfig, ns, name, "StepStarted")) == 3
    assert len(events(kubeconfig, ns, name, "Promoted")) == 2  # v1 first, then v3
