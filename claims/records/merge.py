"""`lpi-claims merge`: the records of other caches (shards run on other machines) brought into one.

A record whose key is already in the target with the same bytes is skipped; one with different
bytes is a conflict (two machines computed the same checkpoint under the same options): the merge
stops before copying anything and names the keys, never overwriting a record silently. A miniature
run the target lacks is copied with the records, so that `lpi-claims report` finds its series.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from claims.records.store import RecordStore
from claims.storage.atomic import atomic_write_bytes


class RecordConflictError(ValueError):
    """Two caches hold different records under one key."""


@dataclass(frozen=True)
class MergeResult:
    copied: int
    identical: int


def merge_caches(sources: Sequence[Path], target: Path) -> MergeResult:
    """Copy every record of `sources` into `target` (see the module's docstring)."""
    into = RecordStore(target)
    incoming: dict[str, Path] = {}
    conflicts = []
    for source in sources:
        if not (Path(source) / "records").is_dir():
            raise FileNotFoundError(
                f"{source} holds no records/ directory: give the cache directories of the runs to merge"
            )
        for path in sorted((Path(source) / "records").glob("*.pt")):
            earlier = incoming.get(path.stem) or (into.path(path.stem) if into.path(path.stem).exists() else None)
            if earlier is not None and earlier.read_bytes() != path.read_bytes():
                conflicts.append(f"{path.stem} ({earlier} vs {path})")
            incoming.setdefault(path.stem, path)
    if conflicts:
        raise RecordConflictError(
            f"{len(conflicts)} record(s) differ between the caches under the same key: {'; '.join(conflicts[:5])}. "
            "The same checkpoint was computed twice under the same options; keep one cache's record "
            "(delete the other file) and merge again. Nothing was copied."
        )
    into.directory.mkdir(parents=True, exist_ok=True)
    copied = sum(atomic_write_bytes(into.path(key), path.read_bytes(), replace=False) for key, path in incoming.items())
    for source in sources:
        _copy_missing_runs(Path(source) / "miniature", Path(target) / "miniature")
    return MergeResult(copied=copied, identical=len(incoming) - copied)


def _copy_missing_runs(source: Path, target: Path) -> None:
    """Each miniature run directory of `source` that `target` lacks, copied whole then renamed into place."""
    if not source.is_dir():
        return
    target.mkdir(parents=True, exist_ok=True)
    for run in source.iterdir():
        if run.is_dir() and not (target / run.name).exists():
            partial = target / f".partial-{run.name}"
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(run, partial)
            partial.rename(target / run.name)
