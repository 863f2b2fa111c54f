"""The record store: cache keying, incompatible entries, and exactly-once computation across processes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from claims.fixtures.series import Checkpoint
from claims.records import ablations
from claims.records import compute as record_code
from claims.records import store as store_module
from claims.records.compute import Data, NonFiniteScoresError, RunOptions
from claims.records.store import RecordStore, record_key
from claims.storage.locks import exclusive
from lpi_core import attribute
from lpi_core.metrics import complement_means, split_half_weights
from tests.helpers import facts, tiny_lm

DATA = Data(["The capital of France is the city of"], ["Paris"])
OPTIONS = RunOptions(examples=1)
CHECKPOINTS = [Checkpoint(step=s, source=f"/models/x/step{s}") for s in (1, 2, 3, 4)]


def fake_record(checkpoint, data, options) -> dict:
    time.sleep(0.2)
    return {
        "ffn": torch.full((2, 3), float(checkpoint.step)),
        "meta": {"format": record_code.RECORD_FORMAT, "step": checkpoint.step},
    }


def test_key_changes_with_data_options_revision_and_code(monkeypatch):
    key = record_key(CHECKPOINTS[0], DATA, OPTIONS)
    assert key == record_key(CHECKPOINTS[0], Data(list(DATA.prompts), list(DATA.answers)), RunOptions(examples=1))
    others = {
        record_key(CHECKPOINTS[0], Data(DATA.prompts, ["Lyon"]), OPTIONS),
        record_key(CHECKPOINTS[0], DATA, dataclasses.replace(OPTIONS, rank_by="positive")),
        record_key(CHECKPOINTS[0], DATA, dataclasses.replace(OPTIONS, st_rank="mean-abs")),
        record_key(CHECKPOINTS[0], DATA, dataclasses.replace(OPTIONS, attn_positions="each")),
        record_key(CHECKPOINTS[0], DATA, dataclasses.replace(OPTIONS, dtype="bfloat16")),
        record_key(dataclasses.replace(CHECKPOINTS[0], revision="step2000-tokens8B"), DATA, OPTIONS),
        record_key(dataclasses.replace(CHECKPOINTS[0], source="/models/y"), DATA, OPTIONS),
        record_key(dataclasses.replace(CHECKPOINTS[0], step=5), DATA, OPTIONS),
    }
    monkeypatch.setattr(store_module, "code_version", lambda: "9.9.9+000000000000")
    others.add(record_key(CHECKPOINTS[0], DATA, OPTIONS))
    assert len(others) == 9 and key not in others


def test_a_checkpoint_inside_the_cache_is_keyed_by_its_path_relative_to_it(tmp_path, monkeypatch):
    inside = [
        Checkpoint(10, str(tmp_path / cache / "miniature" / "run" / "moe" / "seed0" / "step10")) for cache in ("a", "b")
    ]
    assert record_key(inside[0], DATA, OPTIONS, tmp_path / "a") == record_key(inside[1], DATA, OPTIONS, tmp_path / "b")
    assert record_key(inside[0], DATA, OPTIONS) != record_key(
        inside[1], DATA, OPTIONS
    )  # without the cache: the full path
    monkeypatch.chdir(tmp_path)  # a cache given as a relative path (--cache-dir a)
    relative = Checkpoint(10, str(Path("a") / "miniature" / "run" / "moe" / "seed0" / "step10"))
    assert record_key(relative, DATA, OPTIONS, Path("a")) == record_key(inside[0], DATA, OPTIONS, tmp_path / "a")
    elsewhere = Checkpoint(10, "/models/x")
    assert record_key(elsewhere, DATA, OPTIONS, tmp_path / "a") == record_key(elsewhere, DATA, OPTIONS)


def test_incompatible_or_damaged_entries_are_recomputed(tmp_path):
    store = RecordStore(tmp_path)
    key = record_key(CHECKPOINTS[0], DATA, OPTIONS)
    store.path(key).write_bytes(b"not a torch file")
    calls = []
    compute = lambda c, d, o: calls.append(c.step) or fake_record(c, d, o)  # noqa: E731
    assert store.ensure(CHECKPOINTS[:1], DATA, OPTIONS, compute=compute)[1]["ffn"][0, 0] == 1.0
    old = {"ffn": torch.zeros(1), "meta": {"format": record_code.RECORD_FORMAT - 1}}
    torch.save(old, store.path(key))
    store.ensure(CHECKPOINTS[:1], DATA, OPTIONS, compute=compute)
    assert calls == [1, 1]
    store.ensure(CHECKPOINTS[:1], DATA, OPTIONS, compute=compute)
    assert calls == [1, 1]  # a valid entry is read, not recomputed


def _count_under_lock(path: str, times: int) -> None:
    for _ in range(times):
        with exclusive(path + ".lock"):
            count = int(Path(path).read_text())
            time.sleep(0.001)
            Path(path).write_text(str(count + 1))


def test_exclusive_excludes_and_leaves_no_lock_file(tmp_path):
    counter = tmp_path / "count"
    counter.write_text("0")
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_count_under_lock, args=(str(counter), 40)) for _ in range(3)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(60)
        assert p.exitcode == 0
    assert counter.read_text() == "120"  # no lost update: never two holders at once
    assert sorted(p.name for p in tmp_path.iterdir()) == ["count"]


def _worker(cache: str, rotate: int) -> None:
    RecordStore(Path(cache)).ensure(CHECKPOINTS, DATA, OPTIONS, compute=fake_record, rotate=rotate, poll_seconds=0.05)


def test_concurrent_workers_compute_each_checkpoint_once(tmp_path):
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker, args=(str(tmp_path), i)) for i in range(3)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(60)
        assert p.exitcode == 0
    store = RecordStore(tmp_path)
    log = store.computed_log()
    keys = [record_key(c, DATA, OPTIONS) for c in CHECKPOINTS]
    assert sorted(k for k, _, _ in log) == sorted(keys)  # each exactly once
    for key, digest, _ in log:
        assert hashlib.sha256(store.path(key).read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in store.directory.iterdir()) == sorted(["computed.log", *(f"{k}.pt" for k in keys)])
    assert (
        len(
            {
                pid
                for *_, pid in (
                    line.split("\t") for line in (tmp_path / "records" / "computed.log").read_text().splitlines()
                )
            }
        )
        >= 2
    )


@pytest.mark.parametrize(
    "value, message",
    [
        (
            float("nan"),
            (
                r"ffn, attn, heads, ffn_layer, attn_layer in layers \[0, 1\].*"
                r"weights hold non-finite values \(model.layers.1.mlp.down_proj.weight\)"
            ),
        ),
        (1e38, r"ffn.* in layers \[.*weights are finite, so its torch.float32 activations overflowed"),
    ],
)
def test_non_finite_scores_name_the_layer_and_nothing_is_written(tmp_path, value, message):
    lm = tiny_lm("olmo")
    with torch.no_grad():
        lm.model.model.layers[1].mlp.down_proj.weight[:, 3] = value
    lm.model.save_pretrained(tmp_path / "broken")
    lm.tokenizer.save_pretrained(tmp_path / "broken")
    store = RecordStore(tmp_path / "cache")
    data = Data(*facts(6))
    with pytest.raises(NonFiniteScoresError, match=message):
        store.ensure([Checkpoint(step=7, source=str(tmp_path / "broken"))], data, RunOptions(examples=6, bootstrap=10))
    assert list(store.directory.iterdir()) == []


def test_options_reject_unknown_readings():
    with pytest.raises(ValueError, match="rank_by must be one of abs, positive"):
        RunOptions(examples=1, rank_by="absolute")
    with pytest.raises(ValueError, match="target must be one of answer, predicted"):
        RunOptions(examples=1, target="top1")


def test_ensure_all_keeps_the_order_of_checkpoints_of_several_series(tmp_path):
    seeds = [Checkpoint(step=1, source=f"/models/seed{s}/step1") for s in (0, 1)]
    found = RecordStore(tmp_path).ensure_all(seeds + CHECKPOINTS[1:2], DATA, OPTIONS, compute=fake_record, rotate=1)
    assert [r["meta"]["step"] for r in found] == [1, 1, 2]
    assert len(RecordStore(tmp_path).computed_log()) == 3  # one record per (series, step), though two share step 1


def test_compute_one_missing_takes_the_first_record_neither_stored_nor_leased_and_never_waits(tmp_path):
    store = RecordStore(tmp_path)
    store.ensure_all(CHECKPOINTS[:1], DATA, OPTIONS, compute=fake_record)  # stored
    other = RecordStore(tmp_path).lease(record_key(CHECKPOINTS[1], DATA, OPTIONS, tmp_path))
    assert other.try_acquire()  # another worker computes step 2
    assert store.compute_one_missing(CHECKPOINTS[:3], DATA, OPTIONS, compute=fake_record)
    assert [line[0] for line in store.computed_log()] == [
        record_key(c, DATA, OPTIONS, tmp_path) for c in (CHECKPOINTS[0], CHECKPOINTS[2])
    ]
    started = time.time()
    assert not store.compute_one_missing(
        CHECKPOINTS[:3], DATA, OPTIONS, compute=fake_record
    )  # only the leased one is left
    assert time.time() - started < 0.2  # no waiting on the other worker (a computation takes 0.2 s)
    other.release()
    assert store.compute_one_missing(CHECKPOINTS[:3], DATA, OPTIONS, compute=fake_record)
    assert len(store.computed_log()) == 3


def test_unit_scores_are_the_means_over_all_examples_each_resample_and_each_split_half():
    x = torch.tensor([[1.0, 2.0], [10.0, 20.0], [3.0, 4.0], [30.0, 40.0], [5.0, 6.0]])
    counts = torch.tensor([[5.0, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
    splits = torch.tensor([[1.0, 1, 0, 0, 0], [0, 0, 1, 0, 1]])
    out = record_code.unit_scores("ffn", x, counts, splits)
    torch.testing.assert_close(out["ffn"], torch.tensor([49.0 / 5, 72.0 / 5]))
    torch.testing.assert_close(out["boot_ffn"], torch.tensor([[1.0, 2.0], [49.0 / 5, 72.0 / 5]]))
    torch.testing.assert_close(out["split_ffn"], torch.tensor([[5.5, 11.0], [4.0, 5.0]]))  # half A: 2 of 5
    # the other half B from the full mean: (5 · mean - 2 · mean_A) / 3
    other = complement_means(out["ffn"].double().numpy(), out["split_ffn"].double().numpy(), 5)
    np.testing.assert_allclose(other, [[38.0 / 3, 50.0 / 3], [41.0 / 3, 62.0 / 3]])


def test_split_half_weights_mark_disjoint_halves_that_repeat():
    weights = split_half_weights(7, 50, seed=3)
    assert weights.shape == (50, 7) and set(weights.unique().tolist()) == {0.0, 1.0}
    assert (weights.sum(1) == 3).all()
    assert torch.equal(weights, split_half_weights(7, 50, seed=3))
    assert len({tuple(r.tolist()) for r in weights}) > 10  # different splits


def test_mean_abs_reading_stores_the_mean_of_the_absolute_scores_and_ranks_ablations_by_it(tmp_path, monkeypatch):
    options = RunOptions(examples=6, bootstrap=10, st_rank="mean-abs")
    with pytest.raises(ValueError, match="st_rank must be one of abs-mean, mean-abs"):
        RunOptions(examples=1, st_rank="abs")
    with pytest.raises(ValueError, match="attn_positions must be one of sum, each"):
        RunOptions(examples=1, attn_positions="all")
    lm = tiny_lm("olmoe")
    lm.model.save_pretrained(tmp_path / "m")
    lm.tokenizer.save_pretrained(tmp_path / "m")
    data = Data(*facts(6))
    record = record_code.compute_record(Checkpoint(step=1, source=str(tmp_path / "m")), data, options, progress=False)
    per_example = attribute(lm, data.prompts, targets=data.answers, reduce="none")
    layers = per_example.ffn.shape[1]
    mean_abs = per_example.ffn.abs().mean(0).reshape(layers, -1)
    torch.testing.assert_close(record["st_ffn"], mean_abs, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(
        record["ffn"], per_example.ffn.mean(0).reshape(layers, -1), atol=1e-6, rtol=1e-5
    )  # signed: R_t
    assert record["split_st_ffn"].shape == (10, *mean_abs.shape) and record["boot_st_attn"].shape[0] == 10
    assert record["meta"]["precision"] == {"forward": "float32", "attribution": "float32"}
    assert record["meta"]["lpi_kernel"] in ("fused", "materialised")
    assert set(record["meta"]["stage_seconds"]) == {"load", "attribute", "rest"}
    experts, ffn_dim = per_example.ffn.shape[2:]
    top = mean_abs.reshape(-1).argsort(descending=True)[: round(0.01 * mean_abs.numel())]
    expected = {(int(i) // (experts * ffn_dim), int(i) // ffn_dim % experts, int(i) % ffn_dim) for i in top}
    masks, target_ranks = [], ablations.target_ranks
    monkeypatch.setattr(
        ablations,
        "target_ranks",
        lambda lm, p, a, batch_size, **mask: (
            masks.append(mask) or target_ranks(lm, p, a, batch_size=batch_size, **mask)
        ),
    )
    record_code.compute_record(Checkpoint(step=1, source=str(tmp_path / "m")), data, options, progress=False)
    assert set(next(m for m in masks if "mask_ffn" in m)["mask_ffn"]) == expected  # the in-sample set comes first
    plain = record_code.compute_record(
        Checkpoint(step=1, source=str(tmp_path / "m")), data, RunOptions(examples=6, bootstrap=10), progress=False
    )
    assert "st_ffn" not in plain


def test_a_record_whose_lease_a_dead_remote_holder_left_is_computed_after_the_timeout(tmp_path):
    store = RecordStore(tmp_path, lease_timeout=0.5)
    key = record_key(CHECKPOINTS[0], DATA, OPTIONS, tmp_path)
    (store.directory / f"{key}.lease").write_text(
        json.dumps({"host": "another-node", "pid": 1, "token": "gone", "created": 0})
    )
    started = time.monotonic()
    found = store.ensure(CHECKPOINTS[:1], DATA, OPTIONS, compute=fake_record, poll_seconds=0.05)
    assert (
        found[1]["ffn"][0, 0] == 1.0 and time.monotonic() - started >= 0.5
    )  # taken over once unchanged for the timeout
    assert not list(store.directory.glob("*.lease"))


def test_a_lease_left_beside_a_stored_record_is_removed(tmp_path):
    store = RecordStore(tmp_path)
    store.ensure(CHECKPOINTS[:1], DATA, OPTIONS, compute=fake_record)
    key = record_key(CHECKPOINTS[0], DATA, OPTIONS, tmp_path)
    (store.directory / f"{key}.lease").write_text(
        json.dumps({"host": "x", "pid": 1, "token": "killed after publishing", "created": 0})
    )
    assert store.ensure(CHECKPOINTS[:1], DATA, OPTIONS, compute=fake_record)[1]["ffn"][0, 0] == 1.0
    assert not list(store.directory.glob("*.lease"))
