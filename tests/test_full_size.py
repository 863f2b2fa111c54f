"""The paper suite end to end, offline, on checkpoints of the paper models' exact configurations
(fixtures/offline_hub.py; one layer, as a CPU can afford): loading from the hub-cache layout,
attribution at the real vocabulary and widths, HIT@10 with its ablations, the report.

    pytest tests/test_full_size.py --full-size          # on the CPU, in float32
    pytest tests/test_full_size.py --full-size --gpu    # the paper suite with --gpu: on the GPU, in bfloat16
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from claims.fixtures.hub import PAPER_MODELS
from claims.fixtures.offline_hub import PAPER_CONFIGS, branch_name, write_paper_revisions

pytestmark = pytest.mark.full_size
ROOT = Path(__file__).resolve().parents[1]
STEPS, EXAMPLES = (10_000, 20_000), 4


def test_the_paper_suite_runs_offline_on_full_size_checkpoints(tmp_path, pytestconfig):
    gpu = pytestconfig.getoption("gpu")
    hub = tmp_path / "hub"
    snapshots = {family: write_paper_revisions(hub, family, STEPS, layers=1) for family in ("moe", "dense")}
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_CACHE": str(hub),
        "TQDM_DISABLE": "1",
    }
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(ROOT / "claims"),
        "--suite",
        "paper",
        "--checkpoints",
        ",".join(map(str, STEPS)),
        "--examples",
        str(EXAMPLES),
        "--bootstrap",
        "10",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--report-dir",
        str(tmp_path / "report"),
        "-p",
        "no:cacheprovider",
        "-q",
        "-n",
        "2",
        *(["--gpu"] if gpu else []),
    ]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    output = done.stdout + done.stderr
    assert done.returncode in (0, 1) and "INTERNALERROR" not in output and "Traceback" not in output, output[-3000:]
    payload = json.loads((tmp_path / "report" / "claims.json").read_text())
    assert payload["context"]["not_measured"] == {} and payload["claims"], output[-3000:]
    assert {family: [t["steps"] for t in trajectories] for family, trajectories in payload["trajectories"].items()} == {
        "moe": [list(STEPS)],
        "dense": [list(STEPS)],
    }

    records = [torch.load(p, weights_only=True) for p in (tmp_path / "cache" / "records").glob("*.pt")]
    assert len(records) == 4
    for record in records:
        family = "moe" if record["meta"]["family"] == "olmoe" else "dense"
        config = PAPER_CONFIGS[PAPER_MODELS[family].repo]
        ffn_units = config.intermediate_size * getattr(config, "num_experts", 1)
        assert record["meta"]["vocab"] == 50304 and record["meta"]["examples"] == EXAMPLES
        assert record["meta"]["revision"] == branch_name(record["meta"]["step"])
        assert record["meta"]["commit"] == Path(snapshots[family][STEPS.index(record["meta"]["step"])]).name
        assert record["ffn"].shape == (1, ffn_units) and record["attn"].shape == (1, config.hidden_size)
        assert record["hits"]["base"].shape == (EXAMPLES,)
        assert record["meta"]["options"]["device"] == ("cuda" if gpu else "cpu")
        assert record["meta"]["precision"]["forward"] == ("bfloat16" if gpu else "float32")
        print(
            f"{record['meta']['family']} step {record['meta']['step']}: {record['meta']['seconds']} s "
            f"{record['meta']['stage_seconds']}"
        )
