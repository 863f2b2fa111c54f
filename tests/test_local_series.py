"""Checkpoint series from anywhere: the step in every naming convention, local directories of
checkpoints, one checkpoint, and the paper suite run offline on a local directory."""

from __future__ import annotations

import json

import pytest

from claims.fixtures.hub import RevisionError, resolve_steps
from claims.fixtures.local import LocalSeriesError, local_series
from claims.fixtures.steps import step_from_name
from claims.running.suite import SuiteConfig, SuiteOptionError
from tests.helpers import tiny_lm
from tests.test_faults import DENSE_TESTS, EVERY_TEST, assert_clean_failure, assert_nothing_half_written, paper_run

NAMED = {
    "step10000-tokens41B": 10_000,  # OLMoE / OLMo
    "step557000-tokens2464B": 557_000,
    "stage1-step10000-tokens42B": 10_000,  # OLMo-2
    "step1000": 1_000,  # Pythia, OLMo-core
    "step0": 0,
    "checkpoint-1000": 1_000,  # transformers' Trainer
    "checkpoint-25": 25,
}
REFUSED = [
    "main",
    "step-1",
    "stepX",
    "step",
    "checkpoint-",
    "checkpoint-final",
    "checkpoint_1000",
    "stage2-ingredient1-step1000-tokens5B",  # a later stage restarts its steps: not one series with stage 1
    "stage1-step",
    "step1000-tokens",
    "global_step1000",
    "model-1000",
    "Step1000",
]


def save(lm, directory, trainer_state: dict | None = None):
    lm.model.save_pretrained(directory)
    lm.tokenizer.save_pretrained(directory)
    if trainer_state is not None:
        (directory / "trainer_state.json").write_text(json.dumps(trainer_state))
    return directory


@pytest.mark.parametrize("name, step", NAMED.items())
def test_every_naming_convention_gives_its_step(name, step):
    assert step_from_name(name) == step


@pytest.mark.parametrize("name", REFUSED)
def test_names_without_a_step_are_refused(name):
    assert step_from_name(name) is None


def test_the_hub_resolver_takes_every_naming_and_refuses_a_repo_without_steps():
    assert resolve_steps("r", [20_000], ["main", "stage1-step10000-tokens42B", "stage1-step20000-tokens84B"]) == {
        20_000: "stage1-step20000-tokens84B"
    }
    assert resolve_steps("r", [2000], ["step1000", "step2000", "step143000"]) == {2000: "step2000"}  # Pythia
    with pytest.raises(RevisionError, match="no branches named with a step.*local directory"):
        resolve_steps("r", [1000], ["main", "v1.0"])


def test_a_trainer_output_directory_is_a_series_in_step_order(tmp_path):
    for seed, step in enumerate((3000, 1000, 2000)):
        save(tiny_lm("olmo", seed), tmp_path / f"checkpoint-{step}", {"global_step": step, "max_steps": 4000})
    (tmp_path / "runs").mkdir()  # what else a Trainer writes (logs): not a checkpoint, skipped
    (tmp_path / "config.json.bak").write_text("{}")
    series = local_series(tmp_path, "dense")
    assert series.steps == [1000, 2000, 3000] and series.total_steps == 4000  # the Trainer's max_steps
    assert [c.source for c in series.checkpoints] == [str(tmp_path / f"checkpoint-{s}") for s in (1000, 2000, 3000)]
    assert series.name == str(tmp_path) and all(c.revision is None for c in series.checkpoints)
    assert series.checkpoints[1].load().model.config.model_type == "olmo"


def test_steps_from_trainer_state_where_the_name_has_none(tmp_path):
    lm = tiny_lm("olmo")
    save(lm, tmp_path / "step500")
    save(lm, tmp_path / "latest", {"global_step": 900})
    save(lm, tmp_path / "final")  # no step anywhere
    series = local_series(tmp_path, "dense")
    assert series.steps == [500, 900] and series.total_steps == 900


def test_one_checkpoint_is_a_one_point_series(tmp_path):
    save(tiny_lm("olmo"), tmp_path / "model")
    series = local_series(tmp_path / "model", "dense")
    assert series.steps == [1] and series.total_steps == 1 and series.checkpoints[0].source == str(tmp_path / "model")
    save(tiny_lm("olmo"), tmp_path / "checkpoint-300", {"global_step": 300, "max_steps": 1200})
    assert local_series(tmp_path / "checkpoint-300", "dense").total_steps == 1200


def test_paths_that_hold_no_series_are_errors_that_name_the_fix(tmp_path):
    with pytest.raises(LocalSeriesError, match="no such file or directory"):
        local_series(tmp_path / "missing", "dense")
    save(tiny_lm("olmo"), tmp_path / "final")
    with pytest.raises(LocalSeriesError, match=r"no checkpoints with a step \(final carry no step\); name each"):
        local_series(tmp_path, "dense")
    save(tiny_lm("olmo"), tmp_path / "step100")
    save(tiny_lm("olmo"), tmp_path / "checkpoint-100")
    with pytest.raises(LocalSeriesError, match="both step 100; keep one"):
        local_series(tmp_path, "dense")


def test_a_local_model_is_read_as_a_local_series_and_placed_by_fraction_of_its_run(tmp_path):
    for step in (1000, 2000):
        save(tiny_lm("olmo", step), tmp_path / "run" / f"checkpoint-{step}")
    config = SuiteConfig(suite="paper", dense_model=str(tmp_path / "run"))
    assert config.local_model("dense") == tmp_path / "run" and config.local_model("moe") is None
    assert [s.steps for s in config.series("dense")] == [[1000, 2000]]
    with pytest.raises(LocalSeriesError, match=r"no checkpoints at --checkpoints \[3000\]; it has \[1000, 2000\]"):
        SuiteConfig(suite="paper", dense_model=str(tmp_path / "run"), checkpoints=(1000, 3000)).series("dense")
    with pytest.raises(SuiteOptionError, match="local path, never removed: drop --disk-budget"):
        SuiteConfig(suite="paper", dense_model=str(tmp_path / "run"), disk_budget="10GB")


def test_the_paper_suite_runs_offline_on_a_local_directory_to_a_report(tmp_path):
    """Three tiny checkpoints in a Trainer-style directory as the dense series; the MoE (the hub's,
    offline, nothing downloaded) is not measured; the dense side is, and the report names the source."""
    run = tmp_path / "my-run"
    for seed, step in enumerate((1000, 2000, 4000)):
        save(tiny_lm("olmo", seed), run / f"checkpoint-{step}", {"global_step": step, "max_steps": 4000})
    done = paper_run(tmp_path, "--dense-model", str(run))
    assert_clean_failure(done)
    payload = json.loads((tmp_path / "report" / "claims.json").read_text())
    assert set(payload["context"]["not_measured"]) == EVERY_TEST - DENSE_TESTS
    assert {c["test_id"] for c in payload["claims"]} == DENSE_TESTS
    dense = payload["context"]["series"]["dense"]
    assert dense["name"] == str(run) and [c["step"] for c in dense["series"][0]["checkpoints"]] == [1000, 2000, 4000]
    assert payload["trajectories"]["dense"][0]["steps"] == [1000, 2000, 4000]
    checks = {c["label"]: c for claim in payload["claims"] for c in claim["checks"]}
    top10 = checks["HIT@10 drop, top10-heads masked (held-out)"]
    assert top10["verdict"] != "not testable"
    alone = payload["context"]["one_model"]  # the contrasts' numbers for the dense model alone, no verdict
    assert set(alone) == {t for t in EVERY_TEST - DENSE_TESTS if t.endswith("-contrast")}
    assert alone["ablate-top10-heads-contrast"]["dense"][top10["label"]]["value"] == top10["value"]
    r_ffn = alone["ffn-concentration-contrast"]["dense"]["FFN R_t 10K-end (in-sample, the paper's)"]
    assert 0 < r_ffn["value"] < 1 and r_ffn["interval"][0] <= r_ffn["value"] <= r_ffn["interval"][1]
    text = (tmp_path / "report" / "claims.md").read_text()
    assert "fraction of its run" in text and "ffn-concentration-contrast, the dense model alone" in text
    assert_nothing_half_written(tmp_path / "cache", tmp_path / "report")
