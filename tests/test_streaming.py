"""Hub revisions streamed within a disk budget (claims/records/streaming.py), on the hub cache's own layout
(blobs, snapshots of symlinks, refs) with a stand-in for the download."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from claims.fixtures.series import Checkpoint
from claims.records.streaming import DiskBudgetError, HubStream, parse_size, stream_records
from claims.running.suite import SuiteConfig, SuiteOptionError
from tests.helpers import tiny_lm

REPO = "allenai/OLMoE-1B-7B-0924"
BRANCHES = [f"step{s}-tokens{s // 250}B" for s in (10_000, 20_000, 30_000, 40_000)]


def disk_use(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


class Remote:
    """Saved revisions standing in for the hub; `download` writes the hub cache's layout."""

    def __init__(self, root: Path, hub_cache: Path) -> None:
        self.root, self.hub_cache = root, hub_cache
        for i, branch in enumerate(BRANCHES):
            lm = tiny_lm("olmoe", seed=i)
            lm.model.save_pretrained(root / branch)
            lm.tokenizer.save_pretrained(root / branch)
        self.downloads: list[str] = []
        self.samples: list[int] = []  # the run's disk use after each download and during each record

    def size(self, checkpoint: Checkpoint) -> int:
        return disk_use(self.root / checkpoint.revision)

    def download(self, checkpoint: Checkpoint) -> None:
        repo_dir = self.hub_cache / f"models--{checkpoint.source.replace('/', '--')}"
        commit = hashlib.sha1(checkpoint.revision.encode()).hexdigest()
        snapshot = repo_dir / "snapshots" / commit
        snapshot.mkdir(parents=True, exist_ok=True)
        (repo_dir / "blobs").mkdir(exist_ok=True)
        for file in (self.root / checkpoint.revision).iterdir():
            blob = repo_dir / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
            if not blob.exists():  # a blob shared with another revision is written once, as the hub does
                shutil.copyfile(file, blob.with_suffix(".incomplete"))
                blob.with_suffix(".incomplete").rename(blob)
            if not (snapshot / file.name).is_symlink():  # already there: a download again changes nothing
                os.symlink(os.path.relpath(blob, snapshot), snapshot / file.name)
        (repo_dir / "refs").mkdir(exist_ok=True)
        (repo_dir / "refs" / checkpoint.revision).write_text(commit)
        self.downloads.append(checkpoint.revision)


@pytest.fixture
def setup(tmp_path):
    hub = tmp_path / "hub"
    remote = Remote(tmp_path / "remote", hub)
    checkpoints = [
        Checkpoint(10_000 * (i + 1), REPO, b, hub_cache=str(hub), offline=True) for i, b in enumerate(BRANCHES)
    ]
    remote.download(checkpoints[1])  # the user had this revision before the run
    remote.downloads.clear()
    return remote, hub, checkpoints


def run(
    remote: Remote, hub: Path, checkpoints, budget: int, fail_at: int | None = None, ledger: Path | None = None
) -> tuple[HubStream, dict]:
    stream = HubStream(budget, hub_cache=hub, download=remote.download, size=remote.size, ledger=ledger)
    before = disk_use(hub)
    records: dict[int, float] = {}
    download = remote.download

    def sampled_download(checkpoint):
        download(checkpoint)
        remote.samples.append(disk_use(hub) - before)

    stream.download = sampled_download

    def compute(checkpoint: Checkpoint) -> None:
        remote.samples.append(disk_use(hub) - before)
        lm = checkpoint.load()  # from the hub cache, offline: the revision is there and whole
        if checkpoint.step == fail_at:
            raise RuntimeError("attribution failed")
        records[checkpoint.step] = float(next(lm.model.parameters()).detach().sum())

    stream_records(checkpoints, stream, has_record=lambda c: c.step in records, compute=compute)
    return stream, records


def test_revisions_stream_within_the_budget_and_only_the_runs_own_snapshots_are_removed(setup):
    remote, hub, checkpoints = setup
    size = max(remote.size(c) for c in checkpoints)
    had = hub / f"models--{REPO.replace('/', '--')}" / "snapshots" / hashlib.sha1(BRANCHES[1].encode()).hexdigest()
    stream, records = run(remote, hub, checkpoints, budget=int(2.5 * size))
    assert sorted(records) == [10_000, 20_000, 30_000, 40_000]
    assert remote.downloads == [BRANCHES[0], BRANCHES[2], BRANCHES[3]]  # not the one the user had
    assert max(remote.samples) <= 2.5 * size  # peak disk use of the run within the budget
    assert max(remote.samples) > 1.5 * size  # and the next revision was downloading beside the current one
    snapshots = {p.name for p in had.parent.iterdir()}
    assert snapshots == {had.name} and (had / "config.json").exists()  # the user's revision kept, whole
    assert stream.ours == {}


def test_a_budget_for_one_revision_downloads_one_at_a_time(setup):
    remote, hub, checkpoints = setup
    size = max(remote.size(c) for c in checkpoints)
    _, records = run(remote, hub, checkpoints, budget=int(1.2 * size))
    assert len(records) == 4 and max(remote.samples) <= 1.2 * size


def test_a_revision_is_never_removed_before_its_record_is_stored(setup):
    remote, hub, checkpoints = setup
    size = max(remote.size(c) for c in checkpoints)
    with pytest.raises(RuntimeError, match="attribution failed"):
        run(remote, hub, checkpoints, budget=3 * size, fail_at=30_000)
    snapshots = hub / f"models--{REPO.replace('/', '--')}" / "snapshots"
    kept = {hashlib.sha1(b.encode()).hexdigest() for b in BRANCHES[1:3]}  # the user's, and the failed record's
    assert kept <= {p.name for p in snapshots.iterdir()}
    assert hashlib.sha1(BRANCHES[0].encode()).hexdigest() not in {
        p.name for p in snapshots.iterdir()
    }  # stored: removed


def test_a_revision_larger_than_the_budget_is_named(setup):
    remote, hub, checkpoints = setup
    with pytest.raises(DiskBudgetError, match=r"step10000.*more than the --disk-budget"):
        run(remote, hub, checkpoints, budget=1000)


def test_disk_budget_sizes_and_options():
    assert parse_size("60GB") == 60 * 10**9 and parse_size("1.5 GiB") == int(1.5 * 2**30) and parse_size("512") == 512
    for bad in ("lots", "60 parsecs", ""):
        with pytest.raises(DiskBudgetError, match="--disk-budget"):
            parse_size(bad)
    with pytest.raises(SuiteOptionError, match="use it with --suite paper"):
        SuiteConfig(disk_budget="60GB")
    assert SuiteConfig(suite="paper", disk_budget="60GB").disk_budget == "60GB"


def test_a_record_another_worker_stored_meanwhile_is_not_computed_and_its_download_not_kept(setup):
    remote, hub, checkpoints = setup
    size = max(remote.size(c) for c in checkpoints)
    stream = HubStream(int(2.5 * size), hub_cache=hub, download=remote.download, size=remote.size)
    records, computed = set(), []

    def compute(checkpoint):
        computed.append(checkpoint.step)
        records.add(checkpoint.step)
        if checkpoint.step == 10_000:
            records.add(30_000)  # stored by another worker while this one computed step 10000

    stream_records(checkpoints, stream, has_record=lambda c: c.step in records, compute=compute)
    assert computed == [10_000, 20_000, 40_000]
    snapshots = hub / f"models--{REPO.replace('/', '--')}" / "snapshots"
    assert {p.name for p in snapshots.iterdir()} == {
        hashlib.sha1(BRANCHES[1].encode()).hexdigest()
    } and stream.ours == {}


def test_revisions_an_interrupted_run_left_are_removed_by_the_next_run_never_the_users(setup, tmp_path):
    remote, hub, checkpoints = setup
    size = max(remote.size(c) for c in checkpoints)
    ledger = tmp_path / "streamed-revisions.json"
    with pytest.raises(RuntimeError):
        run(remote, hub, checkpoints, budget=3 * size, fail_at=30_000, ledger=ledger)
    snapshots = hub / f"models--{REPO.replace('/', '--')}" / "snapshots"
    users = hashlib.sha1(BRANCHES[1].encode()).hexdigest()
    left = {p.name for p in snapshots.iterdir()} - {users}
    assert left and {commit for _, commit in json.loads(ledger.read_text())} == left
    stream, records = run(remote, hub, checkpoints[2:], budget=3 * size, ledger=ledger)  # the rerun: the rest
    assert sorted(records) == [30_000, 40_000]
    assert {p.name for p in snapshots.iterdir()} == {users} and json.loads(ledger.read_text()) == []
