"""The real Argo CD (3.6.1's application controller and repo server, ``make argocd``) run from
this machine against a cluster, with what it needs around it: Redis (Debian's
``redis-server``; Argo CD's cache of manifests and, since v3, of resource health) and a git
server (``git daemon``, serving folders under the work folder as ``git://`` URLs).

``tools/argocd/build.sh`` builds the binaries from Argo CD's Go module and copies Argo CD's
CRDs and its ``git-verify-wrapper.sh`` next to them; nothing of Argo CD is committed.
``ArgoCD`` installs the CRDs, the ``argocd`` namespace, ``argocd-cm`` with DEX's health checks
(the ``kustomize/argocd/health`` component, used the way its kustomization says: as a
component of the kustomization that installs Argo CD), ``argocd-rbac-cm``, ``argocd-secret``
and the ``default`` AppProject (argocd-server, not run here, normally creates it), then starts
the four processes; on exit it stops them. The CRDs, namespace and settings stay: they are the
cluster's installation.

Probed quirks (``../shared/ARGOCD.md``): ``ARGOCD_FAKE_IN_CLUSTER=true`` makes the in-cluster
destination ``https://kubernetes.default.svc`` use the kubeconfig (as Argo CD's own Procfile
does); the repo server runs ``git-verify-wrapper.sh`` from PATH even with GPG off, and
``--disable-tls`` needs an empty ``--client-ca-path``. The controller has no flag for its
metrics address: its /healthz and /metrics listen on every interface of this machine.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import BaseModel

from dex_testing import SOURCE_ROOT
from dex_testing.crds import kubectl_binary, run_kubectl, wait_established
from dex_testing.lifecycle import Started
from dexctl.processes import Child, ProcessRecord, free_ports

log = logging.getLogger(__name__)

BUILD_SCRIPT = SOURCE_ROOT / "tools" / "argocd" / "build.sh"
HEALTH_COMPONENT = SOURCE_ROOT / "kustomize" / "argocd" / "health"
NAMESPACE = "argocd"
# The destination Argo CD calls in-cluster; with ARGOCD_FAKE_IN_CLUSTER it is the kubeconfig's.
IN_CLUSTER = "https://kubernetes.default.svc"
FIELD_MANAGER = "dex-argocd-test"
PART_OF = {"app.kubernetes.io/part-of": "argocd"}
GIT_AUTHOR = {
    "GIT_AUTHOR_NAME": "dex-test",
    "GIT_AUTHOR_EMAIL": "dex-test@localhost",
    "GIT_COMMITTER_NAME": "dex-test",
    "GIT_COMMITTER_EMAIL": "dex-test@localhost",
}


class MissingArgoCDError(RuntimeError):
    """Argo CD (or Redis / git it needs) is not installed on this machine."""


class ArgoCDAssets(BaseModel):
    folder: Path
    controller: Path  # symlinks to bin/argocd: the name selects the component
    repo_server: Path
    bin: Path  # argocd + kustomize: on the repo server's PATH
    hack: Path  # git-verify-wrapper.sh: on the repo server's PATH
    crds: Path
    redis_server: Path
    git_daemon: Path


def argocd_folder() -> Path:
    """The folder build.sh uses, computed by build.sh itself so there is one definition."""
    if explicit := os.environ.get("DEX_ARGOCD_DIR"):
        return Path(explicit)
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-dir"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


def _git_daemon() -> Path | None:
    # git-daemon itself (git's exec path), not `git daemon`: one process, found by its name.
    git = shutil.which("git")
    if git is None:
        return None
    exec_path = subprocess.run(
        [git, "--exec-path"], capture_output=True, text=True, check=False
    ).stdout.strip()
    daemon = Path(exec_path) / "git-daemon"
    return daemon if os.access(daemon, os.X_OK) else None


def find_argocd() -> ArgoCDAssets:
    folder = argocd_folder()
    missing: list[str] = []
    bin_dir = folder / "bin"
    wanted = ("argocd-application-controller", "argocd-repo-server", "kustomize")
    if not all(os.access(bin_dir / name, os.X_OK) for name in wanted):
        missing.append(f"Argo CD 3.6.1 in {folder} (run `make argocd`; ~6 min once)")
    redis = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin")
    if redis is None:
        missing.append("Redis (Debian redis-server; `make argocd` installs it)")
    daemon = _git_daemon()
    if daemon is None:
        missing.append("git daemon (Debian git; `make argocd` installs it)")
    if missing or redis is None or daemon is None:
        raise MissingArgoCDError("Argo CD cannot start: missing " + "; ".join(missing))
    return ArgoCDAssets(
        folder=folder,
        controller=bin_dir / "argocd-application-controller",
        repo_server=bin_dir / "argocd-repo-server",
        bin=bin_dir,
        hack=folder / "hack",
        crds=folder / "crds",
        redis_server=Path(redis),
        git_daemon=daemon,
    )


def _redis_pong(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64).startswith(b"+PONG")


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _rss(pid: int) -> str:
    """The process's resident memory as /proc reports it (for the log: what a run cost)."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as status:
            return next(
                (line.split(":", 1)[1].strip() for line in status if line.startswith("VmRSS:")), "?"
            )
    except OSError:
        return "?"


def _settings_objects() -> list[dict[str, Any]]:
    """What an Argo CD installation brings besides its workloads, as its install.yaml would:
    the settings the controller and repo server read (by name, among objects labelled
    part-of=argocd) and the ``default`` project."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "argocd-cm", "labels": PART_OF},
            # The installation's own key; DEX's component merges its health checks next to it.
            "data": {"timeout.reconciliation": "180s"},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "argocd-rbac-cm", "labels": PART_OF},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "argocd-secret", "labels": PART_OF},
            "stringData": {"server.secretkey": "dex-test-not-a-secret"},
        },
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "AppProject",
            "metadata": {"name": "default"},
            "spec": {
                "sourceRepos": ["*"],
                "destinations": [{"server": "*", "namespace": "*"}],
                "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
            },
        },
    ]


class ArgoCD(Started):
    """Installs Argo CD's CRDs and settings into the cluster ``kubeconfig`` names and runs
    Redis, git daemon, the repo server and the application controller on 127.0.0.1; a context
    manager. ``work`` holds their scratch folders, logs and the served git repositories."""

    def __init__(self, kubeconfig: Path, work: Path, *, timeout: float = 120.0) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.work = Path(work)
        self.timeout = timeout
        self.repos = self.work / "repos"
        self.children: dict[str, Child] = {}
        self.redis_port = 0
        self.git_port = 0
        self.repo_server_port = 0
        self.repo_server_metrics_port = 0
        self.controller_metrics_port = 0

    # --- git ---------------------------------------------------------------------------------
    def repo_url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.git_port}/{name}"

    def commit(self, name: str, files: dict[str, str], message: str) -> str:
        """Write ``files`` (path -> text) into the served repository ``name`` (created on first
        use, branch ``main``) and commit them; returns the commit's SHA."""
        repo = self.repos / name
        if not (repo / ".git").is_dir():
            repo.mkdir(parents=True, exist_ok=True)
            self._git(repo, "init", "--quiet", "--initial-branch=main")
        for path, text in files.items():
            target = repo / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        self._git(repo, "add", "--all")
        self._git(repo, "commit", "--quiet", "--allow-empty", "-m", message)
        return self._git(repo, "rev-parse", "HEAD").strip()

    def _git(self, repo: Path, *args: str) -> str:
        env = {**os.environ, **GIT_AUTHOR, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(self.work)}
        done = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            check=False,
            env=env,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    # --- install -----------------------------------------------------------------------------
    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return run_kubectl(self.kubeconfig, *args, stdin=stdin).stdout

    def _install(self, assets: ArgoCDAssets) -> None:
        log.info(
            "Argo CD: applying its CRDs (%s) and waiting for them to be Established", assets.crds
        )
        applied = self.kubectl(
            "apply", "--server-side", "--force-conflicts", f"--field-manager={FIELD_MANAGER}",
            "-k", str(assets.crds), "-o", "name",
        )  # fmt: skip
        wait_established(
            self.kubeconfig, applied.split(), timeout=self.timeout, kubectl=kubectl_binary()
        )
        # The installation's kustomization, with DEX's health checks as the component they
        # are shipped as (kustomize/README.md); kustomize wants the component's path relative.
        install = self.work / "install"
        install.mkdir(parents=True, exist_ok=True)
        (install / "settings.yaml").write_text(yaml.safe_dump_all(_settings_objects()))
        component = os.path.relpath(HEALTH_COMPONENT.resolve(), install.resolve())
        (install / "kustomization.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kustomize.config.k8s.io/v1beta1",
                    "kind": "Kustomization",
                    "namespace": NAMESPACE,
                    "resources": ["settings.yaml"],
                    "components": [component],
                }
            )
        )
        log.info("Argo CD: applying namespace %s, settings and DEX's health checks", NAMESPACE)
        self.kubectl(
            "apply", "--server-side", "--force-conflicts", f"--field-manager={FIELD_MANAGER}",
            "-k", str(install),
        )  # fmt: skip

    def health_checks(self) -> dict[str, str]:
        """The ``resource.customizations.health.*`` keys of argocd-cm in the cluster."""
        cm = json.loads(
            self.kubectl("get", "configmap", "argocd-cm", "-n", NAMESPACE, "-o", "json")
        )
        data: dict[str, str] = cm.get("data") or {}
        return {k: v for k, v in data.items() if k.startswith("resource.customizations.health.")}

    # --- processes ---------------------------------------------------------------------------
    def start(self) -> None:
        assets = find_argocd()
        self.work.mkdir(parents=True, exist_ok=True)
        self.repos.mkdir(parents=True, exist_ok=True)
        self._install(assets)
        (
            self.redis_port,
            self.git_port,
            self.repo_server_port,
            self.repo_server_metrics_port,
            self.controller_metrics_port,
        ) = free_ports(5)
        self._start_redis(assets)
        self._start_git_daemon(assets)
        scratch = {name: self.work / "scratch" / name for name in ("tls", "ssh", "gnupg", "tmp")}
        for folder in scratch.values():
            folder.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "ARGOCD_FAKE_IN_CLUSTER": "true",
            "ARGOCD_GPG_ENABLED": "false",
            "ARGOCD_TLS_DATA_PATH": str(scratch["tls"]),
            "ARGOCD_SSH_DATA_PATH": str(scratch["ssh"]),
            "ARGOCD_GNUPGHOME": str(scratch["gnupg"]),
            "TMPDIR": str(scratch["tmp"]),
            "HOME": str(self.work),
            # kustomize (bin/) and git-verify-wrapper.sh (hack/), which the repo server runs.
            "PATH": os.pathsep.join([str(assets.bin), str(assets.hack), os.environ["PATH"]]),
        }
        self._start_repo_server(assets, env)
        self._start_controller(assets, env)

    def _start_redis(self, assets: ArgoCDAssets) -> None:
        data = self.work / "redis"
        data.mkdir(parents=True, exist_ok=True)
        redis = Child(
            "redis-server",
            [
                str(assets.redis_server),
                "--bind", "127.0.0.1",
                "--port", str(self.redis_port),
                "--save", "",
                "--appendonly", "no",
                "--dir", str(data),
            ],
            log=self.work / "redis.log",
        )  # fmt: skip
        self.children["redis"] = redis
        log.info("Argo CD: waiting for Redis on 127.0.0.1:%d (PING)", self.redis_port)
        redis.wait_ready(lambda: _redis_pong(self.redis_port), timeout=30, what="answering PING")

    def _start_git_daemon(self, assets: ArgoCDAssets) -> None:
        daemon = Child(
            "git-daemon",
            [
                str(assets.git_daemon),
                f"--base-path={self.repos}",
                "--export-all",
                "--reuseaddr",
                "--informative-errors",
                "--listen=127.0.0.1",
                f"--port={self.git_port}",
                str(self.repos),
            ],
            log=self.work / "git-daemon.log",
            env={**os.environ, "HOME": str(self.work)},
        )
        self.children["git-daemon"] = daemon
        log.info("Argo CD: waiting for git daemon on 127.0.0.1:%d", self.git_port)
        daemon.wait_ready(lambda: _accepts(self.git_port), timeout=30, what="accepting")

    def _start_repo_server(self, assets: ArgoCDAssets, env: dict[str, str]) -> None:
        repo_server = Child(
            "argocd-repo-server",
            [
                str(assets.repo_server),
                "--address", "127.0.0.1",
                "--port", str(self.repo_server_port),
                "--metrics-address", "127.0.0.1",
                "--metrics-port", str(self.repo_server_metrics_port),
                "--redis", f"127.0.0.1:{self.redis_port}",
                "--disable-tls",
                "--client-ca-path=",
            ],
            log=self.work / "argocd-repo-server.log",
            env=env,
        )  # fmt: skip
        self.children["repo-server"] = repo_server
        healthz = f"http://127.0.0.1:{self.repo_server_metrics_port}/healthz"
        log.info("Argo CD: waiting for the repo server (%s)", healthz)
        repo_server.wait_ready(
            lambda: (
                httpx.get(healthz, timeout=2).status_code == 200 and _accepts(self.repo_server_port)
            ),
            timeout=self.timeout,
            what=f"healthy ({healthz})",
        )

    def _start_controller(self, assets: ArgoCDAssets, env: dict[str, str]) -> None:
        controller = Child(
            "argocd-application-controller",
            [
                str(assets.controller),
                f"--kubeconfig={self.kubeconfig}",
                "--namespace", NAMESPACE,
                "--redis", f"127.0.0.1:{self.redis_port}",
                "--repo-server", f"127.0.0.1:{self.repo_server_port}",
                "--repo-server-plaintext",
                "--metrics-port", str(self.controller_metrics_port),
                # Each resource's health in the Application's status.resources[] (v3 keeps
                # it only in Redis by default): what `kubectl get application` users read.
                "--persist-resource-health",
            ],
            log=self.work / "argocd-application-controller.log",
            # The controller takes its shard from the StatefulSet pod name it runs as.
            env={**env, "HOSTNAME": "argocd-application-controller-0"},
        )  # fmt: skip
        self.children["controller"] = controller
        healthz = f"http://127.0.0.1:{self.controller_metrics_port}/healthz"
        log.info("Argo CD: waiting for the application controller (%s)", healthz)
        controller.wait_ready(
            lambda: httpx.get(healthz, timeout=2).status_code == 200,
            timeout=self.timeout,
            what=f"healthy ({healthz})",
        )
        log.info("Argo CD: controller pid=%d, repo server pid=%d, Redis pid=%d, git daemon pid=%d",
                 controller.pid, self.children["repo-server"].pid,
                 self.children["redis"].pid, self.children["git-daemon"].pid)  # fmt: skip

    def records(self) -> list[ProcessRecord]:
        """The processes, in start order."""
        order = ("redis", "git-daemon", "repo-server", "controller")
        return [self.children[n].record for n in order if n in self.children]

    def stop(self) -> None:
        for name in ("controller", "repo-server", "git-daemon", "redis"):
            child = self.children.pop(name, None)
            if child is not None:
                log.info(
                    "Argo CD: stopping %s pid=%d (RSS %s)", child.name, child.pid, _rss(child.pid)
                )
                child.stop(grace=10.0)
        shutil.rmtree(self.work / "redis", ignore_errors=True)
        shutil.rmtree(self.work / "scratch", ignore_errors=True)
