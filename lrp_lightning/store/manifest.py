"""Locating stores and reading their manifests: format versions, ``manifest.json``, :func:`find_runs`.

``manifest.json`` names the run (the metadata in :data:`~lrp_lightning.store.RUN_METADATA_KEYS`), the
format version that wrote it, and the list of complete epochs. Reading checks the version (see
"Versioning" in :mod:`lrp_lightning.store.contract`) and parses every epoch entry.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import fileio
from .contract import (
    CLASS_NAMES_KEY,
    EPOCHS_KEY,
    FORMAT_VERSION,
    FORMAT_VERSION_KEY,
    HEATMAP_SHAPE_KEY,
    LIBRARY_VERSION_KEY,
    MANIFEST_FILE,
    READABLE_MAJOR_VERSIONS,
    STORE_SUBDIR,
)
from .epochs import _entry_from_json
from .errors import CorruptFileError, SchemaError, StoreNotFoundError, UnsupportedFormatError
from .modalities import _check_modality_values

__all__ = ["find_runs"]


def _library_version() -> str:
    try:
        from lrp_lightning import __version__
    except ImportError:  # pragma: no cover - only when the module is used outside the package
        return "unknown"
    return str(__version__)


def _parse_version(value: Any, source: Path) -> tuple[int, int]:
    if not isinstance(value, str) or not re.fullmatch(r"\d+\.\d+", value):
        raise UnsupportedFormatError(
            f"{source} has format_version {value!r}, expected 'major.minor' such as {FORMAT_VERSION!r}; "
            "the file was not written by lrp-lightning or is damaged."
        )
    major, minor = value.split(".")
    return int(major), int(minor)


_OWN_VERSION = tuple(int(part) for part in FORMAT_VERSION.split("."))


def _check_readable(manifest: Mapping[str, Any], source: Path) -> None:
    major, _ = _parse_version(manifest.get(FORMAT_VERSION_KEY), source)
    if major not in READABLE_MAJOR_VERSIONS:
        readable = ", ".join(f"{m}.x" for m in READABLE_MAJOR_VERSIONS)
        raise UnsupportedFormatError(
            f"{source} uses store format {manifest[FORMAT_VERSION_KEY]} (written by lrp-lightning "
            f"{manifest.get(LIBRARY_VERSION_KEY, 'unknown')}), but this lrp-lightning "
            f"({_library_version()}) reads formats {readable} only (up to {FORMAT_VERSION}). "
            "Upgrade lrp-lightning (pip install --upgrade lrp-lightning) to read this run."
        )


def _needs_migration(manifest: Mapping[str, Any], source: Path) -> bool:
    """Whether the store is of an older major format version (another layout) that must be migrated."""
    return _parse_version(manifest.get(FORMAT_VERSION_KEY), source)[0] < _OWN_VERSION[0]


def _check_writable(manifest: Mapping[str, Any], source: Path) -> None:
    _check_readable(manifest, source)
    version = _parse_version(manifest[FORMAT_VERSION_KEY], source)
    if version[0] < _OWN_VERSION[0]:
        raise UnsupportedFormatError(
            f"{source} uses store format {manifest[FORMAT_VERSION_KEY]}, an older layout that this "
            f"lrp-lightning ({_library_version()}) reads but does not write. Migrate the store in place "
            f"to format {FORMAT_VERSION} first: run `lrp-analyze {source.parent.parent.parent}` or call "
            "RunStore(path).migrate() (resuming the training does it too)."
        )
    if version > _OWN_VERSION:
        raise UnsupportedFormatError(
            f"{source} uses store format {manifest[FORMAT_VERSION_KEY]}, newer than format "
            f"{FORMAT_VERSION} written by this lrp-lightning ({_library_version()}); writing into it "
            "could lose what the newer version stores. Upgrade lrp-lightning to resume this run, or "
            "write to another directory."
        )


def _normalise_json(value: Any, name: str) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"{name} must be JSON-serialisable (str, numbers, lists, dicts): {exc}") from exc


def _resolve_store_dir(path: Path) -> Path:
    if (path / MANIFEST_FILE).exists():  # a manifest that is not a regular file fails when read
        return path
    if (path / STORE_SUBDIR / MANIFEST_FILE).exists():
        return path / STORE_SUBDIR
    raise StoreNotFoundError(
        f"no lrp-lightning store at {path}: neither {path / MANIFEST_FILE} nor "
        f"{path / STORE_SUBDIR / MANIFEST_FILE} exists. Pass the directory of a run trained with "
        "LRPCallback (the logger's log_dir) or its plugins/lrp directory; find_runs(root) lists the runs "
        "below a folder."
    )


def find_runs(root: str | os.PathLike[str]) -> list[Path]:
    """Find every run directory below ``root`` (``root`` included) that holds an lrp-lightning store.

    Parameters
    ----------
    root : path
        Folder to search, e.g. TensorBoard's ``--logdir``.

    Returns
    -------
    list of pathlib.Path
        Sorted run directories (the parent of ``plugins/lrp``). Hidden directories are skipped.
    """
    root = Path(root)
    runs: set[Path] = set()
    for directory, subdirs, files in os.walk(root):
        here = Path(directory)
        if MANIFEST_FILE in files and here.parts[-2:] == STORE_SUBDIR.parts:
            runs.add(here.parent.parent)
            subdirs[:] = []  # attributions/ and analysis/ hold no runs
            continue
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
    return sorted(runs)


def _read_manifest(path: Path) -> dict[str, Any]:
    """Read and check ``manifest.json``; its parsed epoch entries are under ``"_parsed_epochs"``, the
    malformed ones (epoch or ``"entry <index>"`` -> (raw entry, error)) under ``"_bad_epochs"``; those
    fail their epoch only, and a rewrite of the manifest keeps them as they are.

    Raises
    ------
    CorruptFileError
        If the file is not a JSON object or an epoch entry is malformed.
    UnsupportedFormatError
        If its major format version is not this library's.
    """
    try:
        data = json.loads(fileio.read_regular(path).decode("utf-8"))
    except ValueError as exc:
        raise CorruptFileError(f"{path} is not valid JSON ({exc}); it was edited by hand or damaged.") from exc
    if not isinstance(data, dict):
        raise CorruptFileError(f"{path} must hold a JSON object, got {type(data).__name__}")
    _check_readable(data, path)
    _check_run_values(data, path)
    epochs = data.get(EPOCHS_KEY, [])
    if not isinstance(epochs, list):
        raise CorruptFileError(f"{path}: 'epochs' must be a list, got {type(epochs).__name__}")
    parsed: dict[int, Any] = {}
    bad: dict[Any, tuple[Any, CorruptFileError]] = {}
    for index, entry in enumerate(epochs):
        try:
            info = _entry_from_json(entry, path)
        except CorruptFileError as exc:  # one bad entry fails its epoch only
            epoch = entry.get("epoch") if isinstance(entry, dict) else None
            key = epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else f"entry {index}"
            bad[key] = (entry, exc)
            continue
        if info.epoch in parsed or info.epoch in bad:
            twice = CorruptFileError(f"{path} lists epoch {info.epoch} twice; it was edited by hand.")
            bad[info.epoch] = (entry, twice)
            parsed.pop(info.epoch, None)
            continue
        parsed[info.epoch] = info
    data["_parsed_epochs"], data["_bad_epochs"] = parsed, bad
    return data


def _check_run_values(data: Mapping[str, Any], source: Path) -> None:
    """The optional run keys that readers use hold what :meth:`RunStore.create` writes, or null."""
    checks = {
        CLASS_NAMES_KEY: ("a list of class names (strings)", lambda v: all(isinstance(n, str) for n in v)),
        "input_shape": (
            "a list of positive integers",
            lambda v: all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in v),
        ),
    }
    for key, (expected, check) in checks.items():
        value = data.get(key)
        if value is not None and not (isinstance(value, list) and check(value)):
            raise CorruptFileError(
                f"{source}: {key!r} must be {expected} or null, got {value!r}; the file was edited by hand "
                f"or is damaged. Restore the value, or set it to null."
            )
    _check_modality_values(data, source)


def _manifest_heatmap_shape(value: Any, source: Path) -> tuple[int, int]:
    """``heatmap_shape`` of a manifest: two positive integers, or an error that names the file and key."""
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise CorruptFileError(
            f"{source}: {HEATMAP_SHAPE_KEY!r} must be [height, width], two positive integers, got {value!r}; "
            "the file was edited by hand or is damaged. Set it to the shape of the stored maps (each part "
            "records it in its schema metadata, lrp.heatmap_shape)."
        )
    return value[0], value[1]
