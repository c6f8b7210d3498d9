"""A file-system model registry: versioned, checksummed, atomically written forecasters.

Layout under ``root`` (a local directory, or a PVC mount in the cluster)::

    root/<name>/registry.json          promotion history: the current version and the known-good stack
    root/<name>/v0001/metadata.json    what was trained, on what, how it scored, with what libraries
    root/<name>/v0001/state.json       the model's JSON state (``Forecaster.export()[0]``)
    root/<name>/v0001/weights.pt       binary blobs from ``export()``: ``.pt`` or ``.skops`` only

**Why versions are immutable directories.** A version is written in full into a hidden temporary
directory (``root/<name>/.tmp-*``), every file flushed to disk, and only then renamed to
``vNNNN``: a rename is atomic, so a crash leaves either a complete version or an invisible
temporary directory, never a half-written version. ``registry.json`` is replaced the same way
(write a temporary file, then ``os.replace``). Promotions and rollbacks hold an exclusive lock
(``root/<name>/.lock``) for their read-modify-write of ``registry.json``.

**Why checksums.** ``metadata.json`` records the sha256 of ``state.json`` and of every blob;
:meth:`ModelRegistry.load` checks them before a single byte reaches the model, so a truncated
copy or an edited file is refused with a one-line :class:`RegistryError` instead of producing
silently wrong forecasts. Nothing is ever unpickled here: blobs are handed as bytes to the
model's ``restore``, which loads them with ``torch.load(weights_only=True)`` or skops.

**Promotion.** A version becomes *current* only when it beats the current one: a lower
``scores["mase"]`` on the *same* evaluation (equal ``scores["evaluation"]`` strings, which
describe the backtest data and protocol), unless forced. Every promoted version is pushed on a
known-good stack; :meth:`ModelRegistry.rollback` pops the current one and makes the previous
known-good version current again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import platform
import re
import shutil
import struct
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version as package_version
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from forecasters.base import Forecaster
from forecasters.series import Series, json_safe

SCHEMA_VERSION = 1
DEFAULT_ROOT = "models"  # the CLI's --registry default, relative to the working directory
ENV_ROOT = "AIOPS_MODEL_REGISTRY"  # overrides DEFAULT_ROOT (in the cluster: the PVC mount)
BLOB_SUFFIXES = (".pt", ".skops")
METADATA = "metadata.json"
STATE = "state.json"
REGISTRY = "registry.json"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_VERSION_RE = re.compile(r"^v(\d{4,})$")
_BLOB_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_LIBRARIES = ("numpy", "scikit-learn", "statsmodels", "torch", "skops", "gpu-aiops")


class RegistryError(ValueError):
    """A registry problem, in one line naming the path or version and what is wrong."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")


class PromotionRefused(RegistryError):
    """The candidate does not beat the current version (or cannot be compared with it)."""


@dataclass(frozen=True)
class ModelVersion:
    """One registered version: where it lives and its metadata (see :func:`build_metadata`)."""

    name: str
    version: str
    path: Path
    metadata: dict

    @property
    def model(self) -> str:
        return self.metadata["model"]

    @property
    def scores(self) -> dict:
        return self.metadata.get("scores") or {}

    @property
    def mase(self) -> float | None:
        return _finite(self.scores.get("mase"))


@dataclass(frozen=True)
class Promotions:
    """``registry.json``: the current version, the known-good stack and the audit trail."""

    current: str | None
    known_good: tuple[str, ...]  # promoted versions, oldest first; the last one is current
    events: tuple[dict, ...]

    @property
    def rolled_back(self) -> set[str]:
        """Versions taken out of service by a rollback and not promoted again since."""
        return {e.get("from") for e in self.events if e.get("action") == "rollback"} - set(self.known_good)

    def to_json(self, name: str) -> dict:
        return {"schema_version": SCHEMA_VERSION, "name": name, "current": self.current,
                "known_good": list(self.known_good), "events": list(self.events)}


class ModelRegistry:
    """Versioned forecasters under ``root`` (see the module docstring for layout and guarantees)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    # -- reading -----------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Registered model names, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _NAME_RE.match(p.name))

    def versions(self, name: str) -> list[ModelVersion]:
        """Every complete version of ``name``, oldest first (hidden temporary directories are not)."""
        return [self._version(name, v) for v in self._version_names(name)]

    def get(self, name: str, version: str) -> ModelVersion:
        """One version's metadata; RegistryError when it does not exist."""
        if not _VERSION_RE.match(version):
            raise RegistryError(f"{name} {version}", "not a version (expected v0001, v0002, ...)")
        return self._version(name, version)

    def promotions(self, name: str) -> Promotions:
        """The promotion history of ``name`` (empty when nothing was ever promoted)."""
        path = self._dir(name) / REGISTRY
        if not path.exists():
            return Promotions(None, (), ())
        data = _read_json(path)
        try:
            current, stack, events = data["current"], tuple(data["known_good"]), tuple(data["events"])
        except (KeyError, TypeError):
            raise RegistryError(str(path), "not a registry file (needs current, known_good and events)") from None
        if (current is None) != (not stack) or (stack and stack[-1] != current):
            raise RegistryError(str(path), f"inconsistent: current {current!r} is not the last known-good version")
        for v in stack:
            if not isinstance(v, str) or not _VERSION_RE.match(v) or not (path.parent / v).is_dir():
                raise RegistryError(str(path), f"known-good version {v!r} does not exist")
        return Promotions(current, stack, events)

    def current(self, name: str) -> ModelVersion | None:
        """The promoted version in service, or None when none was promoted."""
        current = self.promotions(name).current
        return None if current is None else self._version(name, current)

    def load(self, name: str, version: str | None = None, device: str | None = None) -> Forecaster:
        """The forecaster of ``version`` (default: the current one), checksums verified first.

        ``device`` (``auto``, ``cpu``, ``cuda``) replaces the stored one for models that take a
        device, so a model trained on a GPU can serve on a CPU-only node, and the other way round.
        """
        import forecasters

        entry = self._resolve(name, version)
        config = dict(entry.metadata["config"])
        if device is not None and "device" in config:
            config["device"] = device
        files = entry.metadata["files"]
        state = json.loads(_verified(entry.path / STATE, files.get(STATE)).decode("utf-8"))
        blobs = {blob: _verified(entry.path / blob, digest) for blob, digest in files.items() if blob != STATE}
        try:
            model = forecasters.build(entry.model, config)
            model.restore(state, blobs)
        except Exception as exc:  # an unknown model, a changed constructor, a blob the model rejects
            raise RegistryError(str(entry.path), f"cannot restore model {entry.model!r}: "
                                f"{type(exc).__name__}: {_one_line(exc)}") from None
        return model

    # -- writing -----------------------------------------------------------------------------------
    def register(self, name: str, forecaster: Forecaster, training: list[Series], scores: dict,
                 device: str = "cpu", notes: str | None = None) -> ModelVersion:
        """Store ``forecaster`` (after ``train``) as the next version of ``name``; not promoted yet."""
        check_name(name)
        state, blobs = forecaster.export()
        _check_blobs(name, blobs)
        state_bytes = _dumps(state, strict=False).encode("utf-8")
        metadata = build_metadata(forecaster, training, scores, device, notes, state_bytes, blobs)
        directory = self._dir(name)
        directory.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=directory))
        try:
            os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide the version from other readers
            for blob, data in blobs.items():
                _write_file(staging / blob, data)
            _write_file(staging / STATE, state_bytes)
            while True:  # another writer may take a number between our look and our rename
                version = self._next_version(name)
                metadata.update(name=name, version=version)
                _write_file(staging / METADATA, (_dumps(metadata, strict=True) + "\n").encode("utf-8"))
                try:
                    os.rename(staging, directory / version)
                    break
                except OSError:
                    if not (directory / version).exists():
                        raise
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _fsync_dir(directory)
        return self._version(name, version)

    def promote(self, name: str, version: str, force: bool = False, baseline: dict | None = None) -> str:
        """Make ``version`` current if it beats the current version; returns why it was promoted.

        ``baseline`` are the current version's scores re-measured on the candidate's evaluation
        (what ``aiops train`` does, so both are scored on the same data); without it the current
        version's stored scores are used. Raises :class:`PromotionRefused` (with the reason)
        when the candidate is not better, the two cannot be compared, or the candidate was rolled
        back earlier, unless ``force``.
        """
        candidate = self.get(name, version)
        with self._locked(name):
            history = self.promotions(name)
            if history.current == version:
                return f"{version} is already current"
            if version in history.rolled_back and not force:
                raise PromotionRefused(f"{name} {version}", "was rolled back; promoting it again needs force")
            incumbent = None if history.current is None else self._version(name, history.current)
            reason = "forced" if force else _better(candidate, incumbent, baseline)
            stack = tuple(v for v in history.known_good if v != version) + (version,)
            event = {"action": "promote", "version": version, "from": history.current, "at": _now(), "reason": reason}
            self._write_promotions(name, Promotions(version, stack, history.events + (event,)))
        return reason

    def rollback(self, name: str) -> tuple[str, str]:
        """Retire the current version and make the previous known-good one current: ``(from, to)``."""
        check_name(name)
        with self._locked(name):
            history = self.promotions(name)
            if len(history.known_good) < 2:
                where = str(self._dir(name) / REGISTRY)
                have = f"only {history.current} was ever promoted" if history.current else "nothing was ever promoted"
                raise RegistryError(where, f"no previous known-good version to roll back to ({have})")
            stack = history.known_good[:-1]
            event = {"action": "rollback", "version": stack[-1], "from": history.current, "at": _now()}
            self._write_promotions(name, Promotions(stack[-1], stack, history.events + (event,)))
        return history.current, stack[-1]

    # -- internals ---------------------------------------------------------------------------------
    def _dir(self, name: str) -> Path:
        check_name(name)
        return self.root / name

    def _resolve(self, name: str, version: str | None) -> ModelVersion:
        if version is not None:
            return self.get(name, version)
        entry = self.current(name)
        if entry is None:
            known = self.versions(name)
            if not known:
                raise RegistryError(str(self._dir(name)), f"no model named {name!r} is registered")
            raise RegistryError(f"{name}", f"no version is promoted; give one of {', '.join(v.version for v in known)}")
        return entry

    def _version(self, name: str, version: str) -> ModelVersion:
        path = self._dir(name) / version
        if not path.is_dir():
            known = self._version_names(name)
            hint = f"known: {', '.join(known)}" if known else f"no versions of {name!r} are registered"
            raise RegistryError(f"{name} {version}", f"unknown version ({hint})")
        metadata = _read_json(path / METADATA)
        missing = [k for k in ("model", "config", "files", "training") if k not in metadata]
        if missing:
            raise RegistryError(str(path / METADATA), f"not model metadata (missing {', '.join(missing)})")
        for key in ("config", "files", "training"):
            if not isinstance(metadata[key], dict):
                raise RegistryError(str(path / METADATA), f"not model metadata ({key} is not an object)")
        for blob in metadata["files"]:
            if blob != STATE and not _blob_name_ok(blob):
                raise RegistryError(str(path / METADATA), f"refusing blob {blob!r}: only {' and '.join(BLOB_SUFFIXES)} files")
        return ModelVersion(name, version, path, metadata)

    def _version_names(self, name: str) -> list[str]:
        """Names of the complete version directories, in version order."""
        directory = self._dir(name)
        if not directory.is_dir():
            return []
        found = [p.name for p in directory.iterdir() if p.is_dir() and _VERSION_RE.match(p.name)]
        return sorted(found, key=_version_number)

    def _next_version(self, name: str) -> str:
        names = self._version_names(name)
        return f"v{_version_number(names[-1]) + 1 if names else 1:04d}"

    def _write_promotions(self, name: str, promotions: Promotions) -> None:
        path = self._dir(name) / REGISTRY
        _atomic_write(path, (_dumps(promotions.to_json(name), strict=True) + "\n").encode("utf-8"))

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        directory = self._dir(name)
        if not directory.is_dir():
            raise RegistryError(str(directory), f"no model named {name!r} is registered")
        with open(directory / ".lock", "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# -- metadata --------------------------------------------------------------------------------------
def build_metadata(forecaster: Forecaster, training: list[Series], scores: dict, device: str,
                   notes: str | None, state_bytes: bytes, blobs: dict[str, bytes]) -> dict:
    """The metadata of a version (``name`` and ``version`` are added when it is written)."""
    files = {STATE: _sha256(state_bytes)} | {blob: _sha256(data) for blob, data in sorted(blobs.items())}
    return {
        "schema_version": SCHEMA_VERSION,
        "name": None,  # set when written
        "version": None,
        "model": registered_model_name(forecaster),
        "config": forecaster.config(),
        "parameters": parameters_summary(forecaster, state_bytes, blobs),
        "training": training_window(training),
        "scores": scores,
        "created_at": _now(),
        "libraries": library_versions(),
        "device": str(device),
        "notes": notes,
        "files": files,
    }


def registered_model_name(forecaster: Forecaster) -> str:
    """The name ``forecasters.build`` knows this forecaster's class by (so load can rebuild it)."""
    from forecasters import MODELS

    target = f"{type(forecaster).__module__}:{type(forecaster).__qualname__}"
    for name, spec in MODELS.items():
        if spec == target:
            return name
    raise RegistryError(target, "not a registered model class (add it to forecasters.MODELS)")


def training_window(training: list[Series]) -> dict:
    """What the model was trained on: span (``end`` is the last sample's time), step, keys, fingerprint."""
    if not training:
        raise RegistryError("training", "no training series given")
    steps = sorted({float(s.step) for s in training})
    if len(steps) != 1:
        raise RegistryError("training", f"series have different steps ({', '.join(f'{s:g} s' for s in steps)})")
    return {
        "start": iso_utc(min(s.start for s in training)),
        "end": iso_utc(max(s.end - s.step for s in training)),
        "step_seconds": steps[0],
        "n_series": len(training),
        "keys": [s.key for s in training],
        "n_values": int(sum(len(s) for s in training)),
        "fingerprint": data_fingerprint(training),
    }


def data_fingerprint(series: list[Series]) -> str:
    """``sha256:<hex>`` over the series' keys, starts, steps and values, in key order.

    Every NaN hashes the same whatever its bit pattern, and -0.0 as 0.0, so equal data always
    gives an equal fingerprint, and any changed value, gap, key, start or step a different one.
    """
    digest = hashlib.sha256(b"gpu-aiops series v1\0")
    for s in sorted(series, key=lambda s: s.key):
        key = s.key.encode("utf-8")
        values = np.where(np.isnan(s.values), np.nan, s.values + 0.0).astype("<f8")
        digest.update(struct.pack("<Q", len(key)) + key + struct.pack("<ddQ", float(s.start), float(s.step), len(s)))
        digest.update(values.tobytes())
    return "sha256:" + digest.hexdigest()


def parameters_summary(forecaster: Forecaster, state_bytes: bytes, blobs: dict[str, bytes]) -> dict:
    """Sizes of what was learned: keys with learned parameters, JSON bytes, blob bytes and tensor elements."""
    summary: dict[str, Any] = {"learned_keys": len(getattr(forecaster, "learned", {}) or {}),
                               "state_bytes": len(state_bytes),
                               "blob_bytes": {blob: len(data) for blob, data in sorted(blobs.items())}}
    tensors = sum(_tensor_elements(blob, data) for blob, data in blobs.items() if blob.endswith(".pt"))
    if tensors:
        summary["tensor_elements"] = tensors
    return summary


def _tensor_elements(blob: str, data: bytes) -> int:
    """Elements of the tensors in a ``.pt`` state_dict. Loading it here with ``weights_only=True``
    also proves that the model's ``restore`` will be able to load it that way."""
    import io

    import torch

    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RegistryError(f"blob {blob!r}", f"not a weights-only torch file: {_one_line(exc)}") from None
    values = loaded.values() if isinstance(loaded, dict) else [loaded]
    return int(sum(v.numel() for v in values if isinstance(v, torch.Tensor)))


def library_versions() -> dict:
    """Python and the installed versions of the libraries a model may depend on (None: not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            out[name] = package_version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


# -- checks and files --------------------------------------------------------------------------------
def check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise RegistryError(f"name {name!r}", "must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit")


def _blob_name_ok(blob: str) -> bool:
    return bool(_BLOB_RE.match(blob)) and blob.endswith(BLOB_SUFFIXES)


def _check_blobs(name: str, blobs: dict[str, bytes]) -> None:
    for blob, data in blobs.items():
        if not isinstance(blob, str) or not _blob_name_ok(blob):
            raise RegistryError(f"{name}: blob {blob!r}", f"refused: blobs must be plain file names ending in "
                                f"{' or '.join(BLOB_SUFFIXES)} (torch state_dicts or skops files)")
        if not isinstance(data, (bytes, bytearray)):
            raise RegistryError(f"{name}: blob {blob!r}", f"must be bytes, got {type(data).__name__}")


def _better(candidate: ModelVersion, incumbent: ModelVersion | None, baseline: dict | None) -> str:
    """Why ``candidate`` should replace ``incumbent``; PromotionRefused when it should not."""
    if incumbent is None:
        return f"{candidate.version} is the first promoted version"
    where = f"{candidate.name} {candidate.version}"
    theirs = baseline if baseline is not None else incumbent.scores
    mine = candidate.scores
    if mine.get("evaluation") is None or mine.get("evaluation") != theirs.get("evaluation"):
        raise PromotionRefused(where, f"scores are not comparable with current {incumbent.version}'s: evaluated on "
                               f"{mine.get('evaluation')!r} vs {theirs.get('evaluation')!r}")
    new, old = _finite(mine.get("mase")), _finite(theirs.get("mase"))
    if new is None or old is None:
        raise PromotionRefused(where, f"no finite MASE to compare (candidate: {'none' if new is None else f'{new:.4f}'}, "
                               f"current {incumbent.version}: {'none' if old is None else f'{old:.4f}'})")
    if not new < old:
        raise PromotionRefused(where, f"MASE {new:.4f} does not beat current {incumbent.version}'s {old:.4f} "
                               "on the same evaluation")
    return f"MASE {new:.4f} beats current {incumbent.version}'s {old:.4f} on the same evaluation"


def _verified(path: Path, digest: str | None) -> bytes:
    if digest is None:
        raise RegistryError(str(path), "not listed in metadata.json; refusing an unchecked file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RegistryError(str(path), "missing (listed in metadata.json)") from None
    except OSError as exc:
        raise RegistryError(str(path), f"cannot read: {exc.strerror or exc}") from None
    if _sha256(data) != digest:
        raise RegistryError(str(path), f"checksum mismatch (expected {digest}, got {_sha256(data)}): "
                            "the file was changed or damaged after registration")
    return data


def _read_json(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RegistryError(str(path), "missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(str(path), f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{path}:{exc.lineno}", f"corrupt JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(data, dict):
        raise RegistryError(str(path), "corrupt: expected a JSON object")
    return data


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the file from other readers
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _dumps(value: Any, strict: bool) -> str:
    """JSON text; numpy scalars and arrays become plain numbers and lists. ``strict``: NaN and
    infinities become null (metadata is read by other tools); otherwise they are kept, so a
    model's state round-trips exactly."""
    def plain(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, np.generic):
            return v.item()
        raise TypeError(f"not JSON-serialisable: {type(v).__name__}")

    text = json.dumps(value, default=plain, indent=1)
    return json.dumps(json_safe(json.loads(text)), indent=1, allow_nan=False) if strict else text


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _version_number(version: str) -> int:
    return int(_VERSION_RE.match(version).group(1))


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def iso_utc(t: float) -> str:
    dt = datetime.fromtimestamp(float(t), tz=timezone.utc)
    return dt.isoformat(timespec="seconds" if dt.microsecond == 0 else "microseconds").replace("+00:00", "Z")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
