"""DEX's three images (and the dev cluster's Redis) built here with buildah, from their Dockerfiles, cached by content.

``make images`` (``tools/images/build.sh``) runs :func:`build`. There is no registry and no
Docker engine: ``FROM python:3.11-slim-bookworm`` is satisfied by a base image made once with
``debootstrap`` (tagged ``localhost/python:3.11-slim-bookworm``; rebuilt only when
:data:`BASE_RECIPE` changes), then ``buildah bud --pull=never`` builds each Dockerfile with the
repository root as context. The build reaches PyPI and the Debian mirror through read-only
bind mounts of the host's pip config, CA bundle and apt sources; none of them lands in an
image.

An image's content key hashes its Dockerfile, the base image id and every file the Dockerfile
``COPY``/``ADD``s (or bind-mounts in a ``RUN``) from the context, as ``git ls-files`` lists
them (tracked and untracked, not ignored). It tags the image (``localhost/dex/<name>:<key>``)
and labels it, so an unchanged tree builds nothing. Each image is exported as an OCI archive,
``<name>.oci.tar``, for ``ctr -n k8s.io images import``.

``--layers`` keeps each step's image, so a change to ``src`` alone re-runs only the steps from
the first ``COPY`` of it (the pinned requirements stay installed); after a build,
:func:`collect_garbage` removes what only superseded builds used. A lock file serializes
builds and :func:`run_in_image`.

All state lives in :func:`cache_dir` (``~/.cache/dex/images``): the archives, ``images.json``
(references, sizes, cold build and cached no-op seconds) and buildah's storage (``storage/``;
``--root``/``--runroot`` point there), so nothing is written to system paths. A failed build
leaves no working container behind (``buildah rm --all`` on that storage).
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import queue
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from pydantic import BaseModel

from dex_testing import SOURCE_ROOT

IMAGES = {
    "dex-operator": "operator/Dockerfile",
    "dex-serving": "serving/Dockerfile",
    "dex-components": "components/Dockerfile",
    # Not DEX's: the dev cluster's stand-in for docker.io/library/redis (no registry here),
    # Debian's real redis-server; kustomize/overlays/dev names it.
    "redis": "tools/images/redis/Dockerfile",
}
BASE_REF = "localhost/python:3.11-slim-bookworm"
RUNTIME = "/usr/sbin/runc"  # crun fails on this hybrid cgroup (v1 + unified)
# Bump when the build logic changes in a way the hashed inputs do not show.
KEY_VERSION = "1"
_STEP = re.compile(r"^(\[\d+/\d+\] )?STEP \d+/\d+: |^--> (Using cache )?[0-9a-f]{11,64}$")
_HEARTBEAT_S = 20.0


class BaseRecipe(BaseModel):
    """What the base image is made of; its hash is the base's cache key."""

    version: int = 1  # bump when ensure_base changes how the recipe is applied
    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    packages: list[str] = [
        "python3",
        "python3-venv",
        "python3-pip",
        "python-is-python3",
        "ca-certificates",
    ]
    # As the official python image: `python` and `python3` in /usr/local/bin.
    symlinks: dict[str, str] = {
        "usr/local/bin/python": "/usr/bin/python3",
        "usr/local/bin/python3": "/usr/bin/python3",
    }
    # `python -m venv` seeds pip from /usr/share/python-wheels. Debian's pip 23.0.1 fails
    # `--require-hashes` installs where a dependency asks for an extra of a pinned package
    # (pypa/pip#9644, e.g. evidently -> pandas[parquet]); the official image seeds pip 24.0.
    venv_pip: str = (
        "pip==24.0 --hash=sha256:ba0d021a166865d2265246961bec0152ff124de910c5cc39f1156ce3fa7c69dc"
    )
    # The mount point of the build's pip config (see host_mounts).
    mkdirs: list[str] = ["etc/xdg/pip"]
    # The bootstrap mirror, its log, apt's downloads and device nodes stay out of the image.
    remove: list[str] = [
        "etc/apt/sources.list",
        "var/log/bootstrap.log",
        "debootstrap",
        "var/cache/apt/archives/*.deb",
        "var/cache/apt/*.bin",
        "var/lib/apt/lists/*",
        "dev/*",
    ]
    config: list[str] = ["--env", "LANG=C.UTF-8", "--cmd", "python3"]


BASE_RECIPE = BaseRecipe()


class BuildError(RuntimeError):
    """A tool is missing or a build step failed."""


class BaseRecord(BaseModel):
    ref: str
    key: str
    image_id: str
    image_bytes: int
    build_s: float | None = None  # debootstrap + commit, when this record saw it built
    built_at: str


class ImageRecord(BaseModel):
    name: str
    ref: str
    key: str
    image_id: str
    image_bytes: int
    archive: Path
    archive_bytes: int
    build_s: float | None  # buildah bud when this record saw this key built
    reused_steps: int = 0  # steps of that build taken from the --layers cache
    # The last cold build of this image (no RUN step from the cache), whatever the tree was.
    cold_build_s: float | None = None
    cold_built_at: str | None = None
    layers: list[str] = []  # that build's --layers cache images (kept by collect_garbage)
    export_s: float  # buildah push to the OCI archive
    built_at: str | None
    cached_s: float | None = None  # the last no-op run (hash + lookups), when there was one
    checked_at: str | None = None


class Record(BaseModel):
    """``images.json``: what is built and how long it took."""

    base: BaseRecord | None = None
    images: dict[str, ImageRecord] = {}


class Outcome(BaseModel):
    name: str
    status: str  # built | exported | cached
    seconds: float
    record: ImageRecord


# ---------------------------------------------------------------------------------- storage


def cache_dir() -> Path:
    if explicit := os.environ.get("DEX_IMAGES_DIR"):
        return Path(explicit)
    # Empty counts as unset (XDG base directory spec), as in the shell scripts' ${X:-default}.
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dex" / "images"


def record_path() -> Path:
    return cache_dir() / "images.json"


def archive_path(name: str) -> Path:
    return cache_dir() / f"{name}.oci.tar"


def load_record() -> Record:
    path = record_path()
    return Record.model_validate_json(path.read_text()) if path.is_file() else Record()


def _save_record(record: Record) -> None:
    tmp = record_path().with_suffix(".tmp")
    tmp.write_text(record.model_dump_json(indent=2) + "\n")
    tmp.replace(record_path())


def buildah_command(*args: str) -> list[str]:
    """A buildah command line on DEX's own storage under :func:`cache_dir`."""
    storage = cache_dir() / "storage"
    return [
        "buildah",
        f"--root={storage / 'root'}",
        f"--runroot={storage / 'runroot'}",
        "--storage-driver=overlay",
        *args,
    ]


def buildah(*args: str, check: bool = True) -> str:
    """Run buildah on DEX's storage; return its stdout."""
    done = subprocess.run(buildah_command(*args), check=False, text=True, capture_output=True)
    if check and done.returncode != 0:
        raise BuildError(
            f"buildah {shlex.join(args)} exited {done.returncode}: {done.stderr.strip()}"
        )
    return done.stdout.strip()


def _image(ref: str) -> tuple[str, int] | None:
    """(id, size in bytes) of ``ref`` in the storage, or None."""
    out = buildah("images", "--json", "--no-trunc", ref, check=False)
    if not out:
        return None
    found = json.loads(out)
    return (found[0]["id"], _bytes(found[0]["size"])) if found else None


def _bytes(human: str) -> int:
    """buildah's ``"1.64 GB"`` (decimal units, 3 significant digits) as bytes."""
    number, _, unit = human.partition(" ")
    scale = {"B": 1, "kB": 10**3, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
    return round(float(number) * scale[unit or "B"])


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """One user of the storage at a time (a build's cleanup removes every working container)."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with (cache_dir() / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say("images: waiting for another images build to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _remove_working_containers() -> None:
    buildah("rm", "--all", check=False)


# ------------------------------------------------------------------------------ content key


def instructions(dockerfile: Path) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line: continuations joined, comments dropped."""
    logical = ""
    for line in dockerfile.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        word, _, rest = (logical + stripped).partition(" ")
        yield word.upper(), rest.strip()
        logical = ""


def context_sources(dockerfile: Path) -> list[str]:
    """Context paths the Dockerfile reads: COPY/ADD sources and RUN bind-mount sources."""
    sources: list[str] = []
    for instruction, rest in instructions(dockerfile):
        if instruction in {"COPY", "ADD"}:
            words = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
            if any(w.startswith("--from=") for w in words):
                continue  # from another stage or image, not from the context
            sources.extend([w for w in words if not w.startswith("--")][:-1])
        elif instruction == "RUN":
            for mount in re.findall(r"--mount=(\S+)", rest):
                options = dict(o.partition("=")[::2] for o in mount.split(","))
                if options.get("type", "bind") == "bind" and "from" not in options:
                    sources.append(options.get("source") or options.get("src") or ".")
    return sources


def _context_files(root: Path, sources: Sequence[str]) -> list[str]:
    if not sources:
        return []
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *sources],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return sorted({f for f in listed.split("\0") if f})


def content_key(name: str, base_id: str, root: Path = SOURCE_ROOT) -> str:
    """Hash of what the build of ``name`` reads: Dockerfile, base image, copied files."""
    dockerfile = root / IMAGES[name]
    digest = hashlib.sha256()
    for part in (KEY_VERSION, name, base_id, IMAGES[name], dockerfile.read_text()):
        digest.update(part.encode() + b"\0")
    for rel in _context_files(root, context_sources(dockerfile)):
        path = root / rel
        if path.is_symlink():
            kind, data = "link", os.readlink(path).encode()
        elif path.is_file():
            kind, data = ("exec" if os.access(path, os.X_OK) else "file"), path.read_bytes()
        else:
            kind, data = "missing", b""  # tracked but deleted in the working tree
        digest.update(f"{rel}\0{kind}\0{len(data)}\0".encode() + data)
    return digest.hexdigest()


def base_key() -> str:
    return hashlib.sha256(BASE_RECIPE.model_dump_json().encode()).hexdigest()


def image_ref(name: str, key: str) -> str:
    return f"localhost/dex/{name}:{key[:16]}"


# ---------------------------------------------------------------------------------- output


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _say(message: str) -> None:
    print(message, flush=True)


def _pump(out: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in out:
        lines.put(line)
    lines.put(None)


def _stream(label: str, command: list[str], step: re.Pattern[str], verbose: bool) -> list[str]:
    """Run ``command``, printing its step lines with elapsed seconds, and in between, at most
    every ``_HEARTBEAT_S`` seconds, its latest line. Returns the lines ``step`` matched."""
    started = time.monotonic()
    last_print = started
    tail: deque[str] = deque(maxlen=60)
    steps: list[str] = []
    lines: queue.Queue[str | None] = queue.Queue()

    def say(line: str) -> None:
        nonlocal last_print
        last_print = time.monotonic()
        _say(f"  [{label} {last_print - started:6.1f}s] {line[:150]}")

    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as proc:
        out: IO[str] | None = proc.stdout
        assert out is not None
        threading.Thread(target=_pump, args=(out, lines), daemon=True).start()
        while True:
            try:
                raw = lines.get(timeout=_HEARTBEAT_S)
            except queue.Empty:
                say(f"... still working on: {tail[-1] if tail else command[0]}")
                continue
            if raw is None:
                break
            line = raw.rstrip()
            tail.append(line)
            if step.search(line):
                steps.append(line)
                say(line)
            elif verbose or time.monotonic() - last_print >= _HEARTBEAT_S:
                say(line if verbose else f"... {line}")
    if proc.returncode != 0:
        if not verbose:
            _say("\n".join(f"  | {line}" for line in tail))
        raise BuildError(f"{label}: {command[0]} exited {proc.returncode}")
    return steps


def _fmt(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


_COLUMNS = ["image", "status", "this run s", "build s", "cached steps", "cold build s"]
_COLUMNS += ["export s", "MB", "archive MB"]


def _row(o: Outcome) -> list[str]:
    r = o.record
    return [
        r.ref,
        o.status,
        _fmt(o.seconds),
        _fmt(r.build_s),
        str(r.reused_steps),
        _fmt(r.cold_build_s),
        _fmt(r.export_s),
        _fmt(r.image_bytes / 1e6, 0),
        _fmt(r.archive_bytes / 1e6, 0),
    ]


def _table(outcomes: Sequence[Outcome], base: BaseRecord, seconds: float) -> str:
    """The summary: per image, this run's status and seconds, its builds, its sizes."""
    built = _fmt(base.build_s)
    base_row = [base.ref, "base", "", built, "", built, "", _fmt(base.image_bytes / 1e6, 0), ""]
    rows = [_COLUMNS, base_row, *map(_row, outcomes)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join([row[0].ljust(widths[0]), *map(str.rjust, row[1:], widths[1:])]) for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines.append(f"{seconds:.1f}s; archives, images.json, buildah storage: {cache_dir()}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- base image


def _labels(ref: str) -> dict[str, str]:
    config = json.loads(buildah("inspect", "--type", "image", ref))["OCIv1"]["config"]
    return dict(config.get("Labels") or {})


def _unmount_under(path: Path) -> None:
    """Unmount whatever a failed debootstrap left mounted under ``path``, deepest first."""
    prefix = f"{path.resolve()}/"
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for point in sorted((p for p in points if p.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False)


def _remove_tree(path: Path) -> None:
    if path.exists():
        _unmount_under(path)
        shutil.rmtree(path)


def _replace_venv_pip(wheels: Path, requirement: str) -> None:
    """Swap the pip wheel venvs are seeded from (downloaded hash-checked, as the host's pip
    reaches its index)."""
    for old in wheels.glob("pip-*.whl"):
        old.unlink()
    pinned = cache_dir() / "base-pip.txt"
    pinned.write_text(requirement + "\n")
    try:
        download = ["download", "--quiet", "--no-deps", "--only-binary=:all:", "--require-hashes"]
        subprocess.run(
            [sys.executable, "-m", "pip", *download, "--dest", str(wheels), "-r", str(pinned)],
            check=True,
        )
    finally:
        pinned.unlink()


def ensure_base(record: Record, *, verbose: bool = False) -> BaseRecord:
    """The python base image, debootstrapped and committed unless its recipe is unchanged."""
    key = base_key()
    found = _image(BASE_REF)
    if found and _labels(BASE_REF).get("dex.base-recipe") == key:
        if record.base is None or record.base.image_id != found[0]:
            record.base = BaseRecord(
                ref=BASE_REF, key=key, image_id=found[0], image_bytes=found[1], built_at=_now()
            )
        _say(f"images: base {BASE_REF}: cached")
        return record.base
    started = time.monotonic()
    rootfs = cache_dir() / "base-rootfs"
    recipe = BASE_RECIPE
    _say(f"images: base {BASE_REF}: debootstrap {recipe.suite} (recipe {key[:12]})")
    _remove_tree(rootfs)
    try:
        _stream(
            "base",
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(recipe.packages)}",
                recipe.suite,
                str(rootfs),
                recipe.mirror,
            ],
            re.compile(r"^I: .*(packages|system)\.\.\.$|^I: Base system installed"),
            verbose,
        )
        _replace_venv_pip(rootfs / "usr/share/python-wheels", recipe.venv_pip)
        for link, target in recipe.symlinks.items():
            (rootfs / link).unlink(missing_ok=True)
            (rootfs / link).symlink_to(target)
        for folder in recipe.mkdirs:
            (rootfs / folder).mkdir(parents=True, exist_ok=True)
        for pattern in recipe.remove:
            for path in rootfs.glob(pattern):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        _say(f"  [base {time.monotonic() - started:6.1f}s] buildah commit {BASE_REF}")
        container = buildah("from", "scratch")
        try:
            buildah("add", container, f"{rootfs}/", "/")
            buildah("config", *recipe.config, "--label", f"dex.base-recipe={key}", container)
            buildah("commit", "--quiet", "--rm", container, BASE_REF)
        finally:
            _remove_working_containers()
    finally:
        _remove_tree(rootfs)
    found = _image(BASE_REF)
    if found is None:
        raise BuildError(f"{BASE_REF} missing right after its commit")
    record.base = BaseRecord(
        ref=BASE_REF,
        key=key,
        image_id=found[0],
        image_bytes=found[1],
        build_s=round(time.monotonic() - started, 1),
        built_at=_now(),
    )
    _save_record(record)
    return record.base


# ----------------------------------------------------------------------------- DEX images


# pip's config files in the order pip reads them (later ones win), and the environment
# variables that say where the index is; copied into one pip.conf for the build.
_PIP_CONFIGS = (
    "/etc/xdg/pip/pip.conf",
    "/etc/pip.conf",
    "~/.config/pip/pip.conf",
    "~/.pip/pip.conf",
)
_PIP_ENV = {
    "PIP_INDEX_URL": "index-url",
    "PIP_EXTRA_INDEX_URL": "extra-index-url",
    "PIP_TRUSTED_HOST": "trusted-host",
    "PIP_CERT": "cert",
    "PIP_DEFAULT_TIMEOUT": "timeout",
}
_IMAGE_CA = "/etc/ssl/certs/ca-certificates.crt"


def host_mounts() -> list[str]:
    """``--volume`` specs: the host's pip config, CA bundle and apt sources, read-only.

    The build's ``pip install`` and ``apt-get`` then reach the registries as the host does.
    Every mount point already exists in the base image (``/etc/xdg/pip`` is made for this),
    so buildah leaves no empty placeholder file in a layer, and bind mounts are not committed:
    none of the host's configuration ends up in an image.
    """
    staged = cache_dir() / "host-config"
    shutil.rmtree(staged, ignore_errors=True)
    (staged / "pip").mkdir(parents=True)
    (staged / "apt").mkdir()
    pip = configparser.ConfigParser(interpolation=None)
    pip.read([Path(p).expanduser() for p in _PIP_CONFIGS])
    if not pip.has_section("global"):
        pip.add_section("global")
    for variable, option in _PIP_ENV.items():
        if value := os.environ.get(variable):
            pip.set("global", option, value)
    ca = Path(pip.get("global", "cert", fallback=_IMAGE_CA))
    if pip.has_option("global", "cert"):
        pip.set("global", "cert", _IMAGE_CA)  # the host's bundle is mounted there
    with (staged / "pip" / "pip.conf").open("w") as out:
        pip.write(out)
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        if source.is_file() and source.suffix in {".list", ".sources"}:
            shutil.copy(source, staged / "apt" / f"host-{source.name}")
    return [
        f"{staged / 'pip'}:/etc/xdg/pip:ro",
        f"{staged / 'apt'}:/etc/apt/sources.list.d:ro",
        *([f"{ca}:{_IMAGE_CA}:ro"] if ca.is_file() else []),
    ]


# Only images in the storage (the base above all), runc, the host's network (the registries),
# each step kept as an image, and no container left by a failed step.
_BUD_FLAGS = ["--pull=never", f"--runtime={RUNTIME}", "--network=host", "--layers", "--force-rm"]


def _build_image(
    name: str, ref: str, key: str, root: Path, verbose: bool
) -> tuple[float, list[str]]:
    """``buildah bud``; returns its seconds and its step and ``--> <image id>`` lines."""
    started = time.monotonic()
    dockerfile, mounts = root / IMAGES[name], [f"--volume={m}" for m in host_mounts()]
    flags = [f"--file={dockerfile}", f"--tag={ref}", f"--label=dex.content-key={key}", *mounts]
    command = buildah_command("bud", *_BUD_FLAGS, *flags, str(root))
    try:
        steps = _stream(name, command, _STEP, verbose)
    except BaseException:
        _remove_working_containers()
        raise
    return round(time.monotonic() - started, 1), steps


def _export(ref: str, archive: Path) -> float:
    """``buildah push`` to an OCI archive (written aside, then renamed into place)."""
    started = time.monotonic()
    partial = archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    try:
        buildah("push", "--quiet", ref, f"oci-archive:{partial}:{ref}")
        partial.replace(archive)
    finally:
        partial.unlink(missing_ok=True)
    return round(time.monotonic() - started, 1)


def _drop_older_tags(keep: str) -> None:
    """Untag the image's earlier builds (collect_garbage then removes what only they used)."""
    repository = keep.rsplit(":", 1)[0]
    for found in json.loads(buildah("images", "--json", check=False) or "[]"):
        for old in found.get("names") or []:
            if old.startswith(f"{repository}:") and old != keep:
                buildah("rmi", old, check=False)


def ensure_image(
    name: str, record: Record, base: BaseRecord, *, root: Path = SOURCE_ROOT, verbose: bool = False
) -> Outcome:
    """Build ``name`` unless an image with its content key exists; export it unless current."""
    started = time.monotonic()
    key = content_key(name, base.image_id, root)
    ref = image_ref(name, key)
    archive = archive_path(name)
    earlier = record.images.get(name)
    previous = earlier if earlier is not None and earlier.key == key else None
    found = _image(ref)
    # An image this record did not see built is built again: all from the --layers cache then.
    if found is None or previous is None or previous.image_id != found[0]:
        _say(f"images: {name}: building {IMAGES[name]} (key {key[:16]})")
        build_s, steps = _build_image(name, ref, key, root, verbose)
        found = _image(ref)
        if found is None:
            raise BuildError(f"{ref} missing right after its build")
        _drop_older_tags(ref)
        _say(f"images: {name}: exporting {archive.name}")
        export_s = _export(ref, archive)
        _say(f"images: {name}: built in {build_s:.1f}s, exported in {export_s:.1f}s")
        status = "built"
        cold = not _reused_a_run(steps)
        current = ImageRecord(
            name=name,
            ref=ref,
            key=key,
            image_id=found[0],
            image_bytes=found[1],
            archive=archive,
            archive_bytes=archive.stat().st_size,
            build_s=build_s,
            reused_steps=sum("Using cache" in line for line in steps),
            layers=[line.split()[-1] for line in steps if line.startswith("--> ")],
            export_s=export_s,
            built_at=_now(),
            cold_build_s=build_s if cold else earlier and earlier.cold_build_s,
            cold_built_at=_now() if cold else earlier and earlier.cold_built_at,
        )
    elif not archive.is_file():
        _say(f"images: {name}: exporting {archive.name} (image {ref} is built)")
        export_s = _export(ref, archive)
        status = "exported"
        update = {"export_s": export_s, "archive_bytes": archive.stat().st_size}
        current = previous.model_copy(update=update)
    else:
        status, current = "cached", previous
    seconds = round(time.monotonic() - started, 2)
    if status == "cached":
        current = current.model_copy(update={"cached_s": seconds, "checked_at": _now()})
        _say(f"images: {name}: cached ({seconds:.2f}s, {ref})")
    record.images[name] = current
    _save_record(record)
    return Outcome(name=name, status=status, seconds=seconds, record=current)


def _reused_a_run(steps: Sequence[str]) -> bool:
    """Whether a RUN step came from the --layers cache (``STEP …: RUN`` then ``Using cache``)."""
    return any(
        ": RUN " in step and following.startswith("--> Using cache")
        for step, following in itertools.pairwise(steps)
    )


def collect_garbage(record: Record) -> None:
    """Remove the images nothing needs: untagged, neither the base nor in the ``--layers``
    cache of an image's latest build (superseded builds, an old base). Leaves go first: an
    image other images build on is removed in a later pass, once they are gone.
    """
    keep = [layer for image in record.images.values() for layer in image.layers]
    if record.base is not None:
        keep.append(record.base.image_id.removeprefix("sha256:"))
    listed = json.loads(buildah("images", "--all", "--json", "--no-trunc", check=False) or "[]")
    ids = {found["id"].removeprefix("sha256:") for found in listed if not found.get("names")}
    doomed = {i for i in ids if not any(i.startswith(k) for k in keep)}
    while doomed:
        removed = {i for i in doomed if _rmi(i)}
        if not removed:
            return
        doomed -= removed


def _rmi(image_id: str) -> bool:
    command = buildah_command("rmi", image_id)
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


def check_tools() -> None:
    missing = [t for t in ("buildah", "debootstrap", "git") if shutil.which(t) is None]
    if not Path(RUNTIME).is_file():
        missing.append(RUNTIME)
    if missing:
        raise BuildError(f"missing {missing}: run `make images` (tools/system-deps.sh images)")
    if os.geteuid() != 0:
        raise BuildError("building images needs root (debootstrap, buildah overlay storage)")


def build(names: Sequence[str] = tuple(IMAGES), *, verbose: bool = False) -> list[Outcome]:
    """Bring the base and ``names`` up to date; print progress and a summary table."""
    check_tools()
    started = time.monotonic()
    with locked():
        _remove_working_containers()  # whatever an interrupted run left
        record = load_record()
        base = ensure_base(record, verbose=verbose)
        outcomes = [ensure_image(n, record, base, verbose=verbose) for n in names]
        if any(o.status == "built" for o in outcomes):
            collect_garbage(record)
    _say("\n" + _table(outcomes, base, time.monotonic() - started))
    return outcomes


def stale(names: Sequence[str] = tuple(IMAGES)) -> list[str]:
    """Images whose archive is missing or older than the working tree (nothing is built)."""
    record = load_record()
    if record.base is None:
        return list(names)
    out = []
    for name in names:
        current = record.images.get(name)
        key = content_key(name, record.base.image_id)
        if current is None or current.key != key or not current.archive.is_file():
            out.append(name)
    return out


# ------------------------------------------------------------------------ using the images


def archive_config(archive: Path) -> dict[str, object]:
    """The image config (``Entrypoint``, ``User``, ``Env`` …) read from an OCI archive."""
    with tarfile.open(archive) as tar:

        def blob(digest: str) -> dict[str, object]:
            member = tar.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}")
            assert member is not None
            document: dict[str, object] = json.load(member)
            return document

        index_file = tar.extractfile("index.json")
        assert index_file is not None
        index = json.load(index_file)
        manifest = blob(index["manifests"][0]["digest"])
        config = blob(manifest["config"]["digest"])  # type: ignore[index]
    inner = config.get("config")
    return dict(inner) if isinstance(inner, dict) else {}


def run_in_image(name: str, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in a throwaway container of the built ``name`` (as the image's user)."""
    ref = load_record().images[name].ref
    with locked():
        container = buildah("from", "--pull=never", "--quiet", ref)
        try:
            run = ["run", f"--runtime={RUNTIME}", "--network=none", container, "--", *argv]
            return subprocess.run(
                buildah_command(*run), check=False, capture_output=True, text=True
            )
        finally:
            buildah("rm", container, check=False)


def _summary() -> str:
    return (__doc__ or "").strip().splitlines()[0]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/images/build.sh", description=_summary())
    parser.add_argument("names", nargs="*", help=f"some of {', '.join(IMAGES)} (default: all)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every build line")
    args = parser.parse_args(argv)
    if unknown := sorted(set(args.names) - set(IMAGES)):
        parser.error(f"unknown images {unknown}")
    try:
        build(args.names or tuple(IMAGES), verbose=args.verbose)
    except BuildError as exc:
        _say(f"images: FAILED: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
