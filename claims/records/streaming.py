"""Hub checkpoints streamed within a disk budget (`--disk-budget`, paper suite): the next revision
downloads while the current one is attributed, and a revision's snapshot leaves the local hub cache
once its record is stored. A revision that was in the hub cache before the run is never removed,
and none is removed before its record is committed. A ledger in the cache lists what streaming runs
downloaded and have not removed, so that a revision an interrupted run left is removed by the next
run once its record is stored, not taken for the user's own.

The budget bounds what the run's own downloads occupy at once: a revision is prefetched only when
it fits beside the one being attributed, else it is downloaded after that one is removed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from huggingface_hub import scan_cache_dir

from claims.fixtures.hub import hub_cache_dir
from claims.fixtures.series import Announcer, Checkpoint, silent
from claims.storage.atomic import atomic_write_json
from claims.storage.locks import exclusive

WEIGHTS_AND_TOKENIZER = ["*.json", "*.safetensors", "*.txt", "*.model"]  # not the duplicate *.bin weights
UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


class DiskBudgetError(ValueError):
    """A revision alone is larger than the disk budget, or the budget cannot be read."""


def parse_size(text: str) -> int:
    """'60GB' -> 60 * 10**9 bytes (also KB, MB, TB and KiB, MiB, GiB, TiB; a bare number is bytes)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in UNITS:
        raise DiskBudgetError(f"--disk-budget must be a size such as 60GB or 500GiB, not {text!r}")
    return int(float(match.group(1)) * UNITS[match.group(2).lower()])


def hub_download(checkpoint: Checkpoint) -> None:
    """Put the checkpoint's revision (weights, config, tokenizer) into its hub cache."""
    from huggingface_hub import snapshot_download

    snapshot_download(
        checkpoint.source,
        revision=checkpoint.revision,
        cache_dir=checkpoint.hub_cache,
        allow_patterns=WEIGHTS_AND_TOKENIZER,
    )


def hub_size(checkpoint: Checkpoint) -> int:
    """Bytes the revision's files take, from the hub's file listing."""
    from fnmatch import fnmatch

    from huggingface_hub import HfApi

    info = HfApi().model_info(checkpoint.source, revision=checkpoint.revision, files_metadata=True)
    return sum(s.size or 0 for s in info.siblings if any(fnmatch(s.rfilename, p) for p in WEIGHTS_AND_TOKENIZER))


class HubStream:
    """Which revisions of a hub cache this run downloaded, what they occupy, and their removal."""

    def __init__(
        self,
        budget: int,
        hub_cache: str | Path | None = None,
        download: Callable[[Checkpoint], None] = hub_download,
        size: Callable[[Checkpoint], int] = hub_size,
        ledger: Path | None = None,
    ) -> None:
        self.budget, self.hub_cache = budget, hub_cache_dir(hub_cache)
        self.download, self.size = download, size
        self.ledger = ledger  # the revisions streaming runs downloaded and have not removed (an interrupted run's)
        present = self._commits() if self.hub_cache.exists() else set()
        self.before = present - self._ledger_entries()  # the user's: never removed
        self.ours: dict[Checkpoint, int] = {}  # downloaded by this run and not yet removed -> bytes

    def _commits(self) -> set[tuple[str, str]]:
        return {
            (repo.repo_id, rev.commit_hash) for repo in scan_cache_dir(self.hub_cache).repos for rev in repo.revisions
        }

    def _ledger_entries(self) -> set[tuple[str, str]]:
        if self.ledger is None or not self.ledger.exists():
            return set()
        return {tuple(entry) for entry in json.loads(self.ledger.read_text())}

    def _ledger_update(self, repo: str, commit: str | None, downloaded: bool) -> None:
        """Add the revision to the ledger (downloaded by this run) or drop it (removed)."""
        if self.ledger is None or commit is None:
            return
        with exclusive(str(self.ledger) + ".lock"):
            entries = self._ledger_entries()
            atomic_write_json(
                self.ledger, sorted(entries | {(repo, commit)} if downloaded else entries - {(repo, commit)})
            )

    def _commit(self, checkpoint: Checkpoint) -> str | None:
        ref = self.hub_cache / f"models--{checkpoint.source.replace('/', '--')}" / "refs" / str(checkpoint.revision)
        return ref.read_text().strip() if ref.exists() else None

    def had(self, checkpoint: Checkpoint) -> bool:
        """The revision was in the hub cache before the run."""
        return (checkpoint.source, self._commit(checkpoint)) in self.before

    def fetch(self, checkpoint: Checkpoint) -> None:
        """Download the revision unless it is there already."""
        if self.had(checkpoint) or checkpoint in self.ours:
            return
        size = self.size(checkpoint)
        if size > self.budget:
            raise DiskBudgetError(
                f"{checkpoint.label} takes {size / 1e9:.1f} GB, more than the --disk-budget of "
                f"{self.budget / 1e9:.1f} GB; raise the budget"
            )
        self.download(checkpoint)
        self.ours[checkpoint] = size
        self._ledger_update(checkpoint.source, self._commit(checkpoint), downloaded=True)

    def fits_beside(self, checkpoint: Checkpoint) -> bool:
        """`checkpoint` can be downloaded now without passing the budget."""
        if self.had(checkpoint) or checkpoint in self.ours:
            return True
        return sum(self.ours.values()) + self.size(checkpoint) <= self.budget

    def remove(self, checkpoint: Checkpoint) -> None:
        """Remove the revision's snapshot (and the blobs no other revision uses) if this run downloaded it."""
        if checkpoint not in self.ours:
            return
        commit = self._commit(checkpoint)
        if commit is not None and (checkpoint.source, commit) not in self.before:
            scan_cache_dir(self.hub_cache).delete_revisions(commit).execute()
            self._ledger_update(checkpoint.source, commit, downloaded=False)
        del self.ours[checkpoint]


def stream_records(
    checkpoints: Sequence[Checkpoint],
    stream: HubStream,
    has_record: Callable[[Checkpoint], bool],
    compute: Callable[[Checkpoint], None],
    announce: Announcer = silent,
) -> None:
    """Compute (and commit) the record of every checkpoint that has none, one after the other,
    downloading the next revision meanwhile where the budget allows and removing each revision
    once its record is stored."""
    todo = [c for c in checkpoints if not has_record(c)]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lpi-claims-prefetch") as pool:
        prefetch = None
        for i, checkpoint in enumerate(todo):
            if prefetch is not None:
                prefetch.result()
            if not has_record(checkpoint):  # another worker may have stored it meanwhile
                stream.fetch(checkpoint)  # nothing to do if it was prefetched
            following = todo[i + 1] if i + 1 < len(todo) else None
            prefetch = None
            if following is not None and not has_record(following) and stream.fits_beside(following):
                prefetch = pool.submit(stream.fetch, following)
            if not has_record(checkpoint):
                compute(checkpoint)
            if has_record(checkpoint):  # committed: only now may its snapshot go
                stream.remove(checkpoint)
                announce(f"{checkpoint.label}: record stored, snapshot removed from the hub cache")
