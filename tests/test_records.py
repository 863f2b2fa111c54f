"""The record store: cache keying, incompatible entries, and exactly-once computation across processes."""
from __future__ import annotations

import dataclasses
import hashlib
import multiprocessing
import time
from pathlib import Path

import pytest
import torch

from claims import records, store as store_module
from claims.records import Data, NonFiniteScoresError, RunOptions
from claims.store import RecordStore, record_key
from fixtures.series import Checkpoint
from lpi_core.locks import exclusive
from tests.helpers import facts, tiny_lm

DATA = Data(["The capital of France is the city of"], ["Paris"])
OPTIONS = RunOptions(examples=1)
CHECKPOINTS = [Checkpoint(step=s, source=f"/models/x/step{s}") for s in (1, 2, 3, 4)]


def fake_record(checkpoint, data, options) -> dict:
    time.sleep(0.2)
    return {"ffn": torch.full((2, 3), float(checkpoint.step)), "meta": {"format": records.RECORD_FORMAT, "step": checkpoint.step}}


def test_key_changes_with_data_options_revision_and_code(monkeypatch):
    key = record_key(CHECKPOINTS[0], DATA, OPTIONS)
    assert key == record_key(CHECKPOINTS[0], Data(list(DATA.prompts), list(DATA.answers)), RunOptions(examples=1))
    others = {
        record_key(CHECKPOINTS[0], Data(DATA.prompts, ["Lyon"]), OPTIONS),
        record_key(CHECKPOINTS[0], DATA, dataclasses.replace(OPTIONS, rank_by="positive")),
        record_key(CHECKPOINTS[0], DATA, dataclasses.replace(OPTIONS, dtype="bfloat16")),
        record_key(dataclasses.replace(CHECKPOINTS[0], revision="step2000-tokens8B"), DATA, OPTIONS),
        record_key(dataclasses.replace(CHECKPOINTS[0], source="/models/y"), DATA, OPTIONS),
        record_key(dataclasses.replace(CHECKPOINTS[0], step=5), DATA, OPTIONS),
    }
    monkeypatch.setattr(store_module, "code_version", lambda: "9.9.9+000000000000")
    others.add(record_key(CHECKPOINTS[0], DATA, OPTIONS))
    assert len(others) == 7 and key not in others


def test_incompatible_or_damaged_entries_are_recomputed(tmp_path):
    store = RecordStore(tmp_path)
    key = record_key(CHECKPOINTS[0], DATA, OPTIONS)
    store.path(key).write_bytes(b"not a torch file")
    calls = []
    compute = lambda c, d, o: calls.append(c.step) or fake_record(c, d, o)  # noqa: E731
    assert store.ensure(CHECKPOINTS[:1], DATA, OPTIONS, compute=compute)[1]["ffn"][0, 0] == 1.0
    old = {"ffn": torch.zeros(1), "meta": {"format": records.RECORD_FORMAT - 1}}
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
    assert len({pid for *_, pid in (line.split("\t") for line in (tmp_path / "records" / "computed.log").read_text().splitlines())}) >= 2


@pytest.mark.parametrize(
    "value, message",
    [
        (float("nan"), r"ffn, attn, heads, ffn_layer, attn_layer in layers \[0, 1\].*weights hold non-finite values \(model.layers.1.mlp.down_proj.weight\)"),
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


def test_half_means_are_the_even_and_odd_examples_means():
    x = torch.tensor([[1.0, 2.0], [10.0, 20.0], [3.0, 4.0], [30.0, 40.0], [5.0, 6.0]])
    assert torch.equal(records.half_means(x), torch.tensor([[3.0, 4.0], [20.0, 30.0]]))
