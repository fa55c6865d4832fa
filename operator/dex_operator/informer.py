"""What the watches last said about the objects a reconcile reads: the DexModels, their
InferenceServices and their HTTPRoutes, kept from the events kopf already receives (what
controller-runtime's cached client is to a Go operator).

A reconcile decides from here once a live read (or seeing the DexModel created) has vouched
for a DexModel's entries, and reads the API server again only where a write needs it
(``controller``). At 500 DexModels the reads a reconcile made (a LIST of InferenceServices by
label, a GET of the route and often of the DexModel, each reconcile) were half of all
requests. An entry may lag the cluster, never lead it: it is what a watch event or one of
our own writes returned. Every write stays conditional on the resourceVersion it was read
at, so a stale entry costs a refused write and a live read, never a lost update.

Entries drop ``metadata.managedFields``: the field managers' bookkeeping is most of an
object's size and nothing here reads it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from dex_operator import MODEL_LABEL

Key = tuple[str, str]


def _rv(obj: Mapping[str, Any]) -> int | None:
    # resourceVersions are opaque to clients; the API server's are etcd revisions, so an
    # integer compare keeps an older echo from replacing a newer entry. If one is not an
    # integer, the later arrival wins: at worst an older entry, which a write then refuses.
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return None


def older(obj: Mapping[str, Any], *, than: Mapping[str, Any]) -> bool:
    """Whether ``obj`` is an older version of ``than`` (False when that cannot be told)."""
    new_rv, old_rv = _rv(obj), _rv(than)
    return new_rv is not None and old_rv is not None and new_rv < old_rv


def _copy(value: Any) -> Any:
    """A deep copy of JSON data (dicts, lists, scalars): what watch events and API responses
    hold. A few times faster than ``copy.deepcopy``, which the informer spent most of its
    time in at 500 DexModels."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _same_version(obj: Mapping[str, Any], than: Mapping[str, Any]) -> bool:
    rv = _rv(obj)
    return rv is not None and rv == _rv(than)


def _slim(obj: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: _copy(v) for k, v in obj.items() if k != "metadata"}
    out["metadata"] = {k: _copy(v) for k, v in obj["metadata"].items() if k != "managedFields"}
    return out


class Store:
    """Objects of one kind by (namespace, name), each tagged with the DexModel it belongs to
    (its ``MODEL_LABEL``; for DexModels, itself)."""

    def __init__(self, *, owned_by_label: bool) -> None:
        self._owned_by_label = owned_by_label
        self._lock = threading.Lock()
        self._objects: dict[Key, dict[str, Any]] = {}
        self._by_model: dict[Key, set[str]] = {}
        self._confirmed: set[Key] = set()

    def _model(self, obj: Mapping[str, Any]) -> str | None:
        meta = obj["metadata"]
        if not self._owned_by_label:
            return str(meta["name"])
        label = (meta.get("labels") or {}).get(MODEL_LABEL)
        return str(label) if label else None

    def observe(self, obj: Mapping[str, Any], *, deleted: bool = False) -> bool:
        """A watch event's object, or what one of our writes returned. Whether it was news:
        not older than the entry, nor the entry itself (the echo of our own write)."""
        meta = obj["metadata"]
        key = (str(meta["namespace"]), str(meta["name"]))
        model = None if deleted else self._model(obj)
        with self._lock:
            have = self._objects.get(key)
            stale = have is not None and (older(obj, than=have) or _same_version(obj, have))
            if stale and not deleted:
                return False
            if have is not None:
                self._unindex(key, have)
            if model is None:  # gone, or no longer labelled as any DexModel's
                self._objects.pop(key, None)
                self._confirmed.discard(key)
                return have is not None
            self._objects[key] = _slim(obj)
            self._by_model.setdefault((key[0], model), set()).add(key[1])
            return True

    def _unindex(self, key: Key, obj: Mapping[str, Any]) -> None:
        model = self._model(obj)
        if model is None:
            return
        names = self._by_model.get((key[0], model))
        if names is not None:
            names.discard(key[1])
            if not names:
                del self._by_model[(key[0], model)]

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            obj = self._objects.get((namespace, name))
            return _copy(obj) if obj is not None else None

    def of_model(self, namespace: str, model: str) -> dict[str, dict[str, Any]]:
        """The objects labelled as ``model``'s, by name (as a LIST by label selector)."""
        with self._lock:
            names = sorted(self._by_model.get((namespace, model), ()))
            return {n: _copy(self._objects[(namespace, n)]) for n in names}

    def confirm(self, namespace: str, name: str) -> None:
        """For DexModels: what the watches say of this one's InferenceServices and route is
        complete from here on (a live read saw them, or we saw it created and so know it has
        none of ours)."""
        with self._lock:
            self._confirmed.add((namespace, name))

    def confirmed(self, namespace: str, name: str) -> bool:
        with self._lock:
            return (namespace, name) in self._confirmed

    def __len__(self) -> int:
        return len(self._objects)


DEXMODELS = Store(owned_by_label=False)
ISVCS = Store(owned_by_label=True)
ROUTES = Store(owned_by_label=True)
