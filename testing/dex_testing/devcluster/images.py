"""Minimal OCI image archives built here, without a registry or an image builder.

The dev node's pause (pod sandbox) and hello (tiny HTTP workload) images each hold one
static binary. An image is an OCI layout packed as a tar: ``oci-layout``, ``index.json``
and ``blobs/sha256/<digest>`` for one uncompressed layer, the config and the manifest —
what ``ctr images import`` reads. Everything is deterministic (fixed mtimes, sorted keys),
so the same binary always gives the same image digest.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path, PurePosixPath

from pydantic import BaseModel

_LAYER = "application/vnd.oci.image.layer.v1.tar"
_CONFIG = "application/vnd.oci.image.config.v1+json"
_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class ImageSpec(BaseModel):
    """One-binary image: ``binary`` copied to ``/<entrypoint name>`` and run as the entrypoint."""

    name: str  # full reference, e.g. localhost/dex/pause:v1.36.3
    binary: Path
    entrypoint: str  # absolute path inside the image
    # The image config's Env, e.g. PATH for images whose users name the binary by command
    # alone (Argo's and KFP's pod specs do).
    env: list[str] = []
    # World-writable sticky folders to create, e.g. /tmp for binaries that write scratch
    # files (there is no base image to bring one).
    scratch_dirs: list[str] = []
    # The image config's User (numeric: kubelet checks runAsNonRoot against it), e.g. for
    # pods whose securityContext demands a non-root user (KFP's do).
    user: str | None = None


def command_image(name: str, binary: Path, *, user: str) -> ImageSpec:
    """A static binary as ``/bin/<its name>``, for pod specs that run it by command name (on
    PATH), with a /tmp for scratch files and a numeric non-root ``user``."""
    return ImageSpec(
        name=name,
        binary=binary,
        entrypoint=f"/bin/{binary.name}",
        env=["PATH=/bin"],
        scratch_dirs=["/tmp"],
        user=user,
    )


def _digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _json(document: object) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def _layer(spec: ImageSpec) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        parents = [str(p) for p in reversed(PurePosixPath(spec.entrypoint.lstrip("/")).parents)]
        folders = [(p, 0o755) for p in parents if p != "."]
        for folder, mode in [*folders, *((d.strip("/"), 0o1777) for d in spec.scratch_dirs)]:
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            info.mode = mode
            info.mtime = 0
            tar.addfile(info)
        _add(tar, spec.entrypoint.lstrip("/"), spec.binary.read_bytes(), mode=0o755)
    return buf.getvalue()


def write_oci_archive(spec: ImageSpec, out: Path) -> Path:
    """Write ``spec`` as an OCI image archive at ``out`` (for ``ctr images import``)."""
    layer = _layer(spec)
    config = _json(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Entrypoint": [spec.entrypoint],
                **({"Env": spec.env} if spec.env else {}),
                **({"User": spec.user} if spec.user else {}),
            },
            "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
        }
    )
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": _MANIFEST,
            "config": {"mediaType": _CONFIG, "digest": _digest(config), "size": len(config)},
            "layers": [{"mediaType": _LAYER, "digest": _digest(layer), "size": len(layer)}],
        }
    )
    tag = spec.name.rsplit(":", 1)[1] if ":" in spec.name.rsplit("/", 1)[-1] else "latest"
    index = _json(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": _MANIFEST,
                    "digest": _digest(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": spec.name,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }
            ],
        }
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
        _add(tar, "index.json", index)
        for blob in (layer, config, manifest):
            _add(tar, f"blobs/sha256/{_digest(blob).removeprefix('sha256:')}", blob)
    return out
