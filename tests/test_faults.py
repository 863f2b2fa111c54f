"""Faults a user meets first, driven through `pytest claims` and `lpi-claims report` as a user runs
them: one clear message naming the problem and the fix, a non-zero exit status, no INTERNALERROR,
no traceback, and nothing half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from claims.catalogue.paper import claim_sides
from claims.cli import main as lpi_claims
from claims.fixtures.hub import RevisionError
from claims.storage.atomic import TMP_PREFIX
from tests.helpers import tiny_lm
from tests.test_hub import make_hub_cache

ROOT = Path(__file__).resolve().parents[1]
EVERY_TEST = {f"{c}-{s}" for c, s in claim_sides()}
DENSE_TESTS = {f"{c}-{s}" for c, s in claim_sides() if s == "dense"}


def offline_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TQDM_DISABLE": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
    }


def paper_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(ROOT / "claims"),
        "--suite",
        "paper",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--report-dir",
        str(tmp_path / "report"),
        "--examples",
        "30",
        "--bootstrap",
        "20",
        "-p",
        "no:cacheprovider",
        "-q",
        *args,
    ]
    return subprocess.run(command, cwd=tmp_path, env=offline_env(tmp_path), capture_output=True, text=True, timeout=600)


def assert_clean_failure(done: subprocess.CompletedProcess) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert "INTERNALERROR" not in output and "Traceback" not in output, output[-3000:]


def assert_nothing_half_written(*directories: Path) -> None:
    for directory in directories:
        if directory.exists():
            assert not [
                p for p in directory.rglob("*") if p.name.startswith(TMP_PREFIX) or p.suffix in (".lock", ".lease")
            ]


def test_offline_with_nothing_downloaded_every_claim_is_not_measured_with_the_download_command(tmp_path):
    done = paper_run(tmp_path)
    assert_clean_failure(done)
    lines = [line for line in done.stdout.splitlines() if line.startswith("claim ")]
    assert {line.split(":")[0].removeprefix("claim ") for line in lines} == EVERY_TEST
    assert all(
        "not measured" in line and "offline and no list of its revisions is cached" in line and "hf download" in line
        for line in lines
    )
    payload = json.loads((tmp_path / "report" / "claims.json").read_text())
    assert set(payload["context"]["not_measured"]) == EVERY_TEST and payload["claims"] == []
    markdown = (tmp_path / "report" / "claims.md").read_text()
    assert "no test was measured" in markdown and "hf download allenai/OLMoE-1B-7B-0924" in markdown
    assert_nothing_half_written(tmp_path / "cache", tmp_path / "report")


def test_a_misspelt_moe_repository_fails_its_claims_and_the_dense_claims_still_run(tmp_path):
    dense = {"step10000-tokens41B": tiny_lm("olmo", seed=1), "step20000-tokens83B": tiny_lm("olmo", seed=2)}
    make_hub_cache(tmp_path / "hf" / "hub", "allenai/OLMo-7B", dense)
    done = paper_run(tmp_path, "--moe-model", "allenai/OLMoE-1B-7B-O924", "--checkpoints", "10000,20000")
    assert_clean_failure(done)
    payload = json.loads((tmp_path / "report" / "claims.json").read_text())
    assert set(payload["context"]["not_measured"]) == EVERY_TEST - DENSE_TESTS
    assert all("allenai/OLMoE-1B-7B-O924" in reason for reason in payload["context"]["not_measured"].values())
    assert {c["test_id"] for c in payload["claims"]} == DENSE_TESTS  # measured, each with its own verdict
    assert payload["trajectories"].keys() == {"dense"} and payload["trajectories"]["dense"][0]["steps"] == [
        10_000,
        20_000,
    ]
    assert_nothing_half_written(tmp_path / "cache", tmp_path / "report")


def test_report_command_offline_prints_the_message_and_exits_2(tmp_path, capsys, monkeypatch):
    for key, value in offline_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    status = lpi_claims(
        ["report", "--suite", "paper", "--cache-dir", str(tmp_path / "cache"), "--report-dir", str(tmp_path / "report")]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("lpi-claims report: allenai/OLMoE-1B-7B-0924: offline and no list of its revisions is cached")
    assert "hf download" in err and not (tmp_path / "report").exists()
    with pytest.raises(RevisionError, match="offline and no list of its revisions"):  # --debug: the traceback
        lpi_claims(["report", "--suite", "paper", "--cache-dir", str(tmp_path / "cache"), "--debug"])
    assert lpi_claims(["report", "--bootstrap", "many"]) == 2
    assert capsys.readouterr().err.strip() == "lpi-claims report: --bootstrap must be an integer, not 'many'"


def _local_hub(tmp_path: Path, dense_lm=None) -> None:
    """Both paper repositories in the local hub cache (tiny models): the MoE at 10K, 20K and 30K, the
    dense at 10K and 20K."""
    hub = tmp_path / "hf" / "hub"
    moe = {
        "step10000-tokens41B": tiny_lm("olmoe", 1),
        "step20000-tokens83B": tiny_lm("olmoe", 2),
        "step30000-tokens126B": tiny_lm("olmoe", 3),
    }
    make_hub_cache(hub, "allenai/OLMoE-1B-7B-0924", moe)
    dense = dense_lm or tiny_lm("olmo", 1)
    make_hub_cache(hub, "allenai/OLMo-7B", {"step10000-tokens41B": dense, "step20000-tokens83B": tiny_lm("olmo", 2)})


def _dense_snapshot(tmp_path: Path, branch: str) -> Path:
    repo = tmp_path / "hf" / "hub" / "models--allenai--OLMo-7B"
    return repo / "snapshots" / (repo / "refs" / branch).read_text()


def _only_the_dense_side_fails(tmp_path: Path, done: subprocess.CompletedProcess, *expected: str) -> None:
    assert_clean_failure(done)
    payload = json.loads((tmp_path / "report" / "claims.json").read_text())
    reading_dense = {f"{c}-{s}" for c, s in claim_sides() if s != "moe"}
    assert set(payload["context"]["not_measured"]) == reading_dense
    for reason in payload["context"]["not_measured"].values():
        assert all(text in reason for text in expected), reason
    assert {c["test_id"] for c in payload["claims"]} == EVERY_TEST - reading_dense  # the MoE side still runs
    assert_nothing_half_written(tmp_path / "cache", tmp_path / "report")


def test_truncated_weights_in_a_cached_snapshot_name_the_file(tmp_path):
    _local_hub(tmp_path)
    weights = _dense_snapshot(tmp_path, "step20000-tokens83B") / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    done = paper_run(tmp_path, "--checkpoints", "10000,20000")
    _only_the_dense_side_fails(
        tmp_path,
        done,
        "allenai/OLMo-7B at revision step20000-tokens83B",
        "truncated",
        "hf download allenai/OLMo-7B --revision step20000-tokens83B --force-download",
    )


def test_an_unsupported_architecture_in_the_hub_cache_names_the_supported_ones(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from tests.helpers import tokenizer

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer()), n_embd=32, n_layer=2, n_head=2))
    _local_hub(tmp_path, dense_lm=type("Saved", (), {"model": gpt2, "tokenizer": tokenizer()})())
    done = paper_run(tmp_path, "--checkpoints", "10000,20000")
    _only_the_dense_side_fails(tmp_path, done, "gpt2", "olmo")


def test_a_revision_missing_from_the_local_hub_cache_is_named_with_its_download_command(tmp_path):
    _local_hub(tmp_path)
    refs = json.dumps(
        {"repo": "allenai/OLMo-7B", "branches": ["step10000-tokens41B", "step20000-tokens83B", "step30000-tokens126B"]}
    )
    cached = tmp_path / "cache" / "hub-refs" / "allenai--OLMo-7B.json"
    cached.parent.mkdir(parents=True)
    cached.write_text(refs)
    done = paper_run(tmp_path, "--checkpoints", "10000,30000")
    _only_the_dense_side_fails(
        tmp_path,
        done,
        "lacks 1 revision(s): step30000-tokens126B",
        "hf download allenai/OLMo-7B --revision step30000-tokens126B",
    )
