"""The hub provider without a hub: the resolver on a list of refs, and loading from a local hub cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from claims.fixtures.hub import (
    LAST,
    PAPER_MODELS,
    RevisionError,
    branch_steps,
    hub_series,
    list_branches,
    resolve_steps,
)
from lpi_core.capture import last_position_logits
from lpi_core.tokenization import encode_prompts
from tests.helpers import facts, tiny_lm

REFS = json.loads((Path(__file__).parent / "data" / "olmoe_refs.json").read_text())["branches"]
REPO = "allenai/OLMoE-1B-7B-0924"


def test_branch_names_are_parsed_not_computed():
    steps = branch_steps(REFS)
    assert steps[10_000] == "step10000-tokens41B"
    assert steps[1_220_000] == "step1220000-tokens5117B"
    assert "main" not in steps.values() and 45_000 not in steps


def test_paper_selection_resolves_on_the_olmoe_refs():
    resolved = resolve_steps(REPO, PAPER_MODELS["moe"].steps, REFS)
    assert resolved[70_000] == "step70000-tokens293B"
    assert resolved[100_000] == "step100000-tokens419B"
    assert resolved[LAST] == "step1220000-tokens5117B"
    assert len(resolved) == 7 + 11 + 1


def test_nearest_branch_within_tolerance_and_clear_error_outside():
    assert resolve_steps(REPO, [45_000], REFS, tolerance=0.2)[45_000] == "step40000-tokens167B"
    with pytest.raises(RevisionError, match=r"step\(s\) \[45000\].*from 5000 to 1220000"):
        resolve_steps(REPO, [45_000], REFS)
    with pytest.raises(RevisionError, match="not a checkpoint series"):
        resolve_steps(REPO, [10_000], ["main"])


def make_hub_cache(root: Path, repo: str, branches: dict[str, object]) -> None:
    """The hub cache layout: refs/<branch> holds a commit, snapshots/<commit>/ the files."""
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    for i, (branch, lm) in enumerate(branches.items()):
        commit = f"{i:040x}"
        (repo_dir / "refs" / branch).write_text(commit)
        lm.model.save_pretrained(repo_dir / "snapshots" / commit)
        lm.tokenizer.save_pretrained(repo_dir / "snapshots" / commit)


def test_offline_series_loads_from_the_local_hub_cache(tmp_path):
    lms = {"step10000-tokens41B": tiny_lm("olmoe", seed=1), "step20000-tokens83B": tiny_lm("olmoe", seed=2)}
    make_hub_cache(tmp_path / "hub", REPO, lms)
    series = hub_series(
        "moe", steps=[10_000, 20_000], cache_dir=tmp_path / "cache", hub_cache=tmp_path / "hub", offline=True
    )
    assert series.steps == [10_000, 20_000] and series.family == "moe" and series.total_steps == 1_200_000
    encoded = encode_prompts(lms["step20000-tokens83B"].tokenizer, facts(4)[0])
    loaded = series.at(20_000).load()
    assert (
        loaded.revision == "step20000-tokens83B" and loaded.commit == f"{1:040x}"
    )  # the snapshot make_hub_cache wrote
    torch.testing.assert_close(
        last_position_logits(loaded, encoded), last_position_logits(lms["step20000-tokens83B"], encoded)
    )


def test_offline_missing_revisions_are_named_with_the_download_command(tmp_path):
    make_hub_cache(tmp_path / "hub", REPO, {"step10000-tokens41B": tiny_lm("olmoe")})
    cached_refs = tmp_path / "cache" / "hub-refs" / f"{REPO.replace('/', '--')}.json"
    cached_refs.parent.mkdir(parents=True)
    cached_refs.write_text(json.dumps({"repo": REPO, "branches": REFS}))
    assert list_branches(REPO, tmp_path / "cache", offline=True) == REFS
    with pytest.raises(
        RevisionError,
        match=(
            r"(?s)lacks 1 revision\(s\): step20000-tokens83B.*"
            r"hf download allenai/OLMoE-1B-7B-0924 --revision step20000-tokens83B"
        ),
    ):
        hub_series(
            "moe", steps=[10_000, 20_000], cache_dir=tmp_path / "cache", hub_cache=tmp_path / "hub", offline=True
        )


def test_offline_with_nothing_cached(tmp_path):
    with pytest.raises(RevisionError, match="offline and no list of its revisions is cached"):
        hub_series("dense", cache_dir=tmp_path / "cache", hub_cache=tmp_path / "hub", offline=True)
