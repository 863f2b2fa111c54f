"""The measurement store (claims/records/measurement_store.py) on hand-made measurements: lossless, keyed by
every input, measured once by concurrent processes, and never half-written."""

from __future__ import annotations

import errno
import io
import multiprocessing
import time
from pathlib import Path

import numpy as np
import pytest

import claims.records.measurement_store
import claims.storage.atomic
from claims.records.measurement_store import decode, encode, measurement_key, record_identity, stored_or_measured
from claims.statistics.measure import SeriesMeasurements, Trajectory
from claims.storage.atomic import TMP_PREFIX
from tests.helpers import same_measurements as same


def tiny_measurements(seed: int = 0) -> SeriesMeasurements:
    """Every field type a series' measurements have: NaN among the replicates, empty arrays, None."""
    rng = np.random.default_rng(seed)
    pairs = lambda: Trajectory([2, 3, 4], rng.normal(size=3), rng.normal(size=(5, 3)), rng.normal(size=(2, 3)))  # noqa: E731
    per_step = lambda: Trajectory([1, 2, 3, 4], rng.normal(size=4), rng.normal(size=(5, 4)))  # noqa: E731
    drop = per_step()
    drop.replicates[1, 2] = np.nan
    return SeriesMeasurements(
        family="moe",
        name="tiny",
        seed=seed,
        steps=[1, 2, 3, 4],
        total_steps=4,
        chance=0.01,
        jstab_ffn=pairs(),
        jstab_attn=pairs(),
        stability_ffn=pairs(),
        stability_attn=pairs(),
        stability_ffn_gap=pairs(),
        stability_attn_gap=pairs(),
        reference_gap=1,
        concentration={"ffn/layer": pairs(), "ffn/routed": pairs(), "attn/pooled": pairs()},
        concentration_null={"ffn/layer": per_step(), "attn/pooled": per_step()},
        concentration_held_out={"ffn/layer": pairs(), "ffn/routed": pairs()},
        ceiling_ffn=Trajectory([1, 2, 3, 4], rng.normal(size=4), np.zeros((0, 4))),
        ceiling_attn=per_step(),
        profile_ffn=rng.normal(size=(4, 2)),
        profile_attn=rng.normal(size=(4, 2)),
        profile_ffn_reps=rng.normal(size=(5, 4, 2)),
        profile_attn_reps=rng.normal(size=(5, 4, 2)),
        hit=per_step(),
        drops={"top1-head": drop, "held-out/top10-heads": per_step()},
        drops_at_1={"random/top1-head": per_step()},
        units={"ffn": 8, "attn": 4, "heads": 2, "layers": 2},
        routed_ffn=[8, 8, 7, 8],
        onset=None,
    )


def test_measurements_come_back_from_their_bytes_unchanged():
    measured = tiny_measurements()
    assert same(decode(encode(measured)), measured)
    assert not same(tiny_measurements(1), measured)  # the comparison sees a difference
    numpy_scalars = tiny_measurements()
    numpy_scalars.chance, numpy_scalars.routed_ffn = np.float64(0.01), [np.int64(n) for n in measured.routed_ffn]
    assert same(decode(encode(numpy_scalars)), measured)  # numpy scalars stored as Python numbers
    assert decode(b"not a measurement") is None
    buffer = io.BytesIO(encode(measured))
    assert decode(buffer.getvalue()[:-10]) is None  # a truncated file


def test_a_measurement_key_changes_with_every_input(monkeypatch):
    base = ([["r1", 10, 100], ["r2", 10, 200]], "moe", "smoke", 0, 60, 30)
    keys = {measurement_key(*base)}
    variants = [[["r1", 10, 100], ["r3", 10, 200]], "dense", "default", 1, 800, 45]
    for i, other in enumerate(variants):
        keys.add(measurement_key(*base[:i], other, *base[i + 1 :]))
    keys.add(measurement_key([["r1", 10, 100], ["r2", 11, 200]], *base[1:]))  # a record rewritten at another size
    keys.add(measurement_key([["r1", 10, 100], ["r2", 10, 201]], *base[1:]))  # ... or at another time
    keys.add(measurement_key(base[0][::-1], *base[1:]))  # the records' order is the steps'
    keys.add(measurement_key(*base[:5], None))
    monkeypatch.setattr(claims.records.measurement_store, "measure_code_version", lambda: "other code")
    keys.add(measurement_key(*base))
    assert len(keys) == 12
    monkeypatch.undo()
    assert measurement_key(*base) == measurement_key(*base)


def test_a_record_rewritten_under_its_key_changes_its_identity(tmp_path):
    path = tmp_path / "record.pt"
    path.write_bytes(b"first")
    before = record_identity("k", path)
    time.sleep(0.01)
    path.write_bytes(b"other")
    assert record_identity("k", path) != before and record_identity("k", path)[:2] == before[:2]


def _measure_concurrently(cache: str, log: str, barrier) -> None:
    def compute() -> SeriesMeasurements:
        with open(log, "a") as f:
            f.write("measured\n")
        time.sleep(2)
        return tiny_measurements()

    barrier.wait()
    assert same(stored_or_measured(Path(cache), "k", compute), tiny_measurements())


def test_two_processes_that_need_one_series_measure_it_once(tmp_path):
    context = multiprocessing.get_context("spawn")
    barrier, log = context.Barrier(2), tmp_path / "log"
    workers = [context.Process(target=_measure_concurrently, args=(str(tmp_path), str(log), barrier)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert log.read_text() == "measured\n"
    assert sorted(p.name for p in (tmp_path / "measurements").iterdir()) == ["k.pt"]  # no lock left


class HalfWritten(io.FileIO):
    """A file on a full device: the write stops halfway with ENOSPC."""

    def write(self, data):
        super().write(bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_cache_is_measured_from_and_keeps_nothing_half_written(tmp_path, monkeypatch):
    monkeypatch.setattr(
        claims.storage.atomic, "open", lambda path, mode="r", *a, **k: HalfWritten(path, "wb"), raising=False
    )
    calls = []
    found = stored_or_measured(tmp_path, "k", lambda: calls.append(1) or tiny_measurements())
    assert same(found, tiny_measurements()) and calls == [1]
    assert list((tmp_path / "measurements").iterdir()) == []  # no result, no temporary, no lock
    monkeypatch.undo()
    (tmp_path / "measurements" / f"{TMP_PREFIX}k.pt-0123abcd").write_bytes(b"half")  # as a killed write leaves it
    stored_or_measured(tmp_path, "k", tiny_measurements)
    assert sorted(p.name for p in (tmp_path / "measurements").iterdir()) == ["k.pt"]
    assert same(stored_or_measured(tmp_path, "k", lambda: pytest.fail("measured again")), tiny_measurements())


def test_a_damaged_stored_measurement_is_measured_again_and_replaced(tmp_path):
    (tmp_path / "measurements").mkdir()
    (tmp_path / "measurements" / "k.pt").write_bytes(b"not a measurement")
    calls = []
    assert same(
        stored_or_measured(tmp_path, "k", lambda: calls.append(1) or tiny_measurements()), tiny_measurements()
    ) and calls == [1]
    assert same(decode((tmp_path / "measurements" / "k.pt").read_bytes()), tiny_measurements())


def test_a_cache_whose_directory_cannot_be_made_is_measured_from(tmp_path):
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache directory should be")
    assert same(stored_or_measured(blocked, "k", tiny_measurements), tiny_measurements())
