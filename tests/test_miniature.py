"""The miniature run, built from scratch on the smoke preset: loading, determinism, keying, resume."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from claims.fixtures.miniature.build import (
    MiniatureRun,
    build_all_series,
    build_miniature,
    build_series,
    prepare_miniature,
    run_directory,
)
from claims.fixtures.miniature.corpus import object_counts, relation_facts, render_corpus
from claims.fixtures.miniature.figure import training_figure
from claims.fixtures.miniature.presets import PRESETS, width_scaled_init
from claims.fixtures.miniature.train import token_stream
from claims.storage.atomic import TMP_PREFIX
from claims.storage.cache import cache_root
from claims.storage.locks import exclusive
from lpi_core import evaluation_set, hits_at_k
from lpi_core.metrics import knowledge_onset
from lpi_core.tokenization import target_token_ids

ROOT = Path(__file__).resolve().parents[1]


def weights_digest(run) -> dict[str, str]:
    return {
        f"{family}/{c.step}": hashlib.sha256((Path(c.source) / "model.safetensors").read_bytes()).hexdigest()
        for family in ("moe", "dense")
        for c in run.series(family).checkpoints
    }


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return build_miniature("smoke", cache_dir=tmp_path_factory.mktemp("cache"))


def expected_parameters(config, family: str) -> int:
    """Parameter count from the shape alone: untied embeddings, attention, FFN (and OLMoE's router and norms)."""
    shape, vocab = config.shape(family), config.vocab_size
    h, layers = shape.hidden, shape.layers
    embeddings = 2 * vocab * h
    if family == "dense":  # OLMo's layer norms carry no weights
        return embeddings + layers * (4 * h * h + 3 * h * shape.ffn_dim)
    experts = shape.experts * 3 * h * shape.expert_dim
    return (
        embeddings + layers * (4 * h * h + 4 * h + shape.experts * h + experts) + h
    )  # norms: input, post, q, k; final


def test_every_checkpoint_loads_through_the_common_loader(smoke):
    moe, dense = smoke.series("moe"), smoke.series("dense")
    assert moe.steps == dense.steps == list(PRESETS["smoke"].checkpoints)
    for series, family in ((moe, "olmoe"), (dense, "olmo")):
        for checkpoint in series.checkpoints:
            lm = checkpoint.load()
            assert lm.adapter.family == family
        assert sum(p.numel() for p in lm.model.parameters()) == expected_parameters(PRESETS["smoke"], series.family)
    assert moe.checkpoints[0].load().model.config.norm_topk_prob is False
    assert len(smoke.losses("moe")) == PRESETS["smoke"].train.steps
    assert smoke.losses("moe")[-1] < smoke.losses("moe")[0] - 1.0


@pytest.mark.parametrize("preset", ["default", "large"])
def test_preset_shapes_have_olmoes_proportions_at_equal_total_parameters(preset):
    config = PRESETS[preset]
    moe, dense = config.moe, config.dense
    assert moe.experts >= 32 and moe.top_k * 8 == moe.experts and moe.active_ffn >= 1.5 * moe.hidden
    assert moe.heads >= 8 and dense.heads >= 8 and 2.5 <= dense.ffn_dim / dense.hidden <= 4
    for shape in (moe, dense):  # the sizing rule (docs/miniature.md): top-1% of units
        assert round(0.01 * shape.attention_neurons) >= 20 and round(0.01 * shape.ffn_neurons) >= 50
    moe_total, dense_total = expected_parameters(config, "moe"), expected_parameters(config, "dense")
    assert abs(moe_total - dense_total) / dense_total < 0.02
    assert config.seeds >= 3
    assert config.train.mixed_precision == "bfloat16"  # as OLMoE and OLMo trained
    warmup, steps = config.train.warmup_steps, config.train.steps
    assert warmup <= 0.02 * steps
    early = [s for s in config.checkpoints if s <= 0.15 * steps]
    assert len(early) >= 5 and len(config.checkpoints) - len(early) >= 5
    assert config.zipf_exponent > 0  # facts at skewed frequencies
    if (
        preset == "large"
    ):  # too big to prepare in a test (190 s, 7.5 GB): 50% of its lines were 42.8% of its tokens (README)
        assert config.corpus_shares[0] <= 0.5


def test_most_of_the_default_corpus_tokens_are_not_the_evaluation_facts(tmp_path):
    """Issue 11: at least half the default's training tokens are other relations and background
    (its evaluation facts are 60% of the lines, but the shortest); the corpus and tokenizer only, ~30 s."""
    run = prepare_miniature("default", tmp_path)
    by_kind, tokens = run.manifest["tokens_by_kind"], run.manifest["tokens"]
    assert sum(by_kind.values()) == tokens == len(run.token_stream())
    assert 0.45 < by_kind["evaluation"] / tokens < 0.5


def test_build_records_hit_at_10_onset_and_prior_baseline(smoke):
    """series.json carries what the claims layer reports; HIT@10 is recomputed here for one checkpoint."""
    manifest = smoke.series_manifest("moe")
    steps = list(PRESETS["smoke"].checkpoints)
    hit = smoke.hit_at_10("moe")
    assert list(hit) == steps and all(0 <= v <= 1 for v in hit.values())
    data = evaluation_set()
    lm = smoke.series("moe").at(steps[-1]).load()
    hits = hits_at_k(lm, data["prompt"], target_token_ids(lm.tokenizer, data["object"]))
    assert hit[steps[-1]] == pytest.approx(hits.float().mean().item())
    hit_1 = smoke.hit_at_1("moe")  # from the same forward pass as HIT@10
    assert list(hit_1) == steps and all(hit_1[s] <= hit[s] for s in steps)
    top1 = hits_at_k(lm, data["prompt"], target_token_ids(lm.tokenizer, data["object"]), k=1)
    assert hit_1[steps[-1]] == pytest.approx(top1.float().mean().item()) and 0 < hit_1[steps[-1]]
    text = [Path(p) for p in smoke.manifest["text_files"]]
    assert (
        torch.equal(smoke.token_stream(), token_stream(lm.tokenizer, text))
        and len(smoke.token_stream()) == smoke.manifest["tokens"]
    )
    assert manifest["chance_hit_at_10"] == pytest.approx(10 / len(lm.tokenizer))
    assert manifest["onset_step"] == knowledge_onset(steps, list(hit.values()), manifest["chance_hit_at_10"])
    assert manifest["total_steps"] == PRESETS["smoke"].train.steps
    assert manifest["prior_baseline_hit_at_10"] == smoke.prior_baseline_hit_at_10
    assert 0.5 < smoke.prior_baseline_hit_at_10 < 1  # six of the twelve relations have at most ten objects
    by_kind = smoke.manifest["tokens_by_kind"]
    assert sum(by_kind.values()) == smoke.manifest["tokens"]
    assert (
        0.5 < by_kind["evaluation"] / smoke.manifest["tokens"] < 0.8
    )  # smoke: 80% of the lines, shorter than the rest


def test_training_figure_is_written(smoke, tmp_path):
    path = training_figure(smoke, tmp_path / "training.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_same_preset_and_seed_give_bit_identical_checkpoints(smoke, tmp_path):
    again = build_miniature("smoke", cache_dir=tmp_path)
    assert weights_digest(again) == weights_digest(smoke)
    assert again.losses("dense") == smoke.losses("dense")


def test_each_seed_is_its_own_series_with_other_weights(smoke):
    seed1 = build_series(smoke, "moe", seed=1)
    assert smoke.seeds == [0]  # seed 1 has no dense series yet
    assert seed1.seed == 1 and seed1.steps == smoke.series("moe").steps
    first, other = (
        load_file(Path(s.checkpoints[0].source) / "model.safetensors") for s in (smoke.series("moe"), seed1)
    )
    assert first.keys() == other.keys() and not any(
        torch.equal(first[k], other[k]) for k in first if k.endswith("proj.weight")
    )
    assert smoke.losses("moe", seed=1) != smoke.losses("moe")
    assert build_series(smoke, "moe", seed=1) == seed1  # built once: the second call only opens it
    with pytest.raises(ValueError, match="seeds are numbered from 0"):
        build_series(smoke, "moe", seed=-1)


def test_cache_key_follows_the_whole_configuration(tmp_path):
    smoke = PRESETS["smoke"]
    assert run_directory(smoke, tmp_path) == run_directory("smoke", tmp_path)
    changed = [
        dataclasses.replace(smoke, sentences=smoke.sentences + 1),
        dataclasses.replace(smoke, model_seed=1),
        dataclasses.replace(smoke, train=dataclasses.replace(smoke.train, lr=1e-3)),
        dataclasses.replace(smoke, moe=dataclasses.replace(smoke.moe, top_k=1)),
    ]
    directories = {run_directory(c, tmp_path) for c in changed}
    assert len(directories) == 4 and run_directory(smoke, tmp_path) not in directories
    text = tmp_path / "mine.txt"
    text.write_text("some text\n")
    assert run_directory(smoke, tmp_path, [text]) != run_directory(smoke, tmp_path)
    # how many seeds a run builds by default is not what a seed's series is: more seeds reuse the others
    assert run_directory(dataclasses.replace(smoke, seeds=8), tmp_path) == run_directory(smoke, tmp_path)


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv("LPI_CLAIMS_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("LPI_CLAIMS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "lpi-claims"


def test_corpus_mixes_skewed_facts_with_other_relations_and_background():
    facts = relation_facts()
    assert len(facts) == 11089
    lines = render_corpus(50_000, zipf_exponent=1.0, seed=0, shares=(0.4, 0.3, 0.3))
    kinds = Counter(line.kind for line in lines)
    assert abs(kinds["evaluation"] - 20_000) < 500 and abs(kinds["background"] - 15_000) < 500
    evaluation = evaluation_set()
    assert {line.relation for line in lines if line.kind == "evaluation"} == set(evaluation["relation"])
    assert not {line.relation for line in lines if line.kind == "other"} & set(evaluation["relation"])
    counts = sorted(Counter(line.text for line in lines if line.kind == "evaluation").values(), reverse=True)
    assert counts[0] > 50 * counts[len(counts) // 2]  # a heavy head and a long tail
    assert [line.text for line in render_corpus(100, seed=3)] == [line.text for line in render_corpus(100, seed=3)]
    assert [line.text for line in render_corpus(100, seed=3)] != [line.text for line in render_corpus(100, seed=4)]
    rendered = {f"{p} {o}." for p, o in zip(evaluation["prompt"], evaluation["object"])}
    assert len(rendered & {line.text for line in render_corpus(200_000, seed=0)}) > 300  # in their evaluation template
    counted = object_counts(lines)
    stated = Counter(line.object for line in lines if line.relation == "country capital city")
    assert counted["country capital city"] == dict(stated) and sum(stated.values()) > 0
    with pytest.raises(ValueError, match="shares must be three"):
        render_corpus(10, shares=(0.5, 0.5))


def test_the_trainer_takes_the_users_own_text(tmp_path):
    text = tmp_path / "mine.txt"
    text.write_text("\n".join(f"Item {i} is colour {i % 7}." for i in range(3000)) + "\n")
    run = build_miniature("smoke", cache_dir=tmp_path / "cache", text_files=[text])
    assert run.manifest["text_files"] == [str(text)]
    assert not (run.root / "corpus.txt").exists()
    assert run.series("moe").checkpoints[-1].load().tokenizer.tokenize(" colour")  # a tokenizer of this text


def test_a_killed_build_resumes_to_the_same_checkpoints(smoke, tmp_path):
    """SIGKILL after the first checkpoint; the rebuild resumes and matches an uninterrupted build bit for bit."""
    code = (
        "from claims.fixtures.miniature.build import build_miniature; "
        f"build_miniature('smoke', cache_dir={str(tmp_path)!r})"
    )
    env = {**os.environ, "TQDM_DISABLE": "1"}
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env)
    root = run_directory("smoke", tmp_path)
    first = root / "moe" / "seed0" / f"step{PRESETS['smoke'].checkpoints[0]}"
    deadline = time.time() + 120
    while not first.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (root / "moe" / "seed0" / "series.json").exists(), "the build finished before it could be killed"
    for step_dir in root.glob("*/seed*/step*"):
        assert (step_dir / "model.safetensors").exists(), f"{step_dir} is visible but incomplete"
    resumed = build_miniature("smoke", cache_dir=tmp_path)
    assert weights_digest(resumed) == weights_digest(smoke)
    assert resumed.losses("moe") == smoke.losses("moe")
    assert not list(root.rglob(f"{TMP_PREFIX}*")) and not list(root.rglob("trainer_state.pt"))


def test_two_builders_share_the_series_and_build_each_once(smoke, tmp_path):
    """Two processes starting from different (family, seed) pairs skip what the other is building:
    each builds some, together every series once, with the weights of a single builder."""
    run = prepare_miniature("smoke", tmp_path)
    with exclusive(str(run.root / "moe" / "seed1") + ".lock"):  # another process building it: skipped at once
        assert build_series(run, "moe", 1, wait=False) is None
    pairs = [(family, seed) for seed in (0, 1) for family in ("moe", "dense")]
    code = (
        "import sys; from claims.fixtures.miniature.build import build_all_series, prepare_miniature; "
        "from claims.fixtures.series import Announcer\n"
        f"pairs = {pairs!r}; shift = int(sys.argv[1])\n"
        f"build_all_series(prepare_miniature('smoke', {str(tmp_path)!r}), pairs[shift:] + pairs[:shift], "
        "announce=Announcer(print))"
    )
    env = {**os.environ, "TQDM_DISABLE": "1"}
    builders = [
        subprocess.Popen([sys.executable, "-c", code, str(i)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for i in (0, 1)
    ]
    outputs = [b.communicate(timeout=600)[0] for b in builders]
    assert [b.returncode for b in builders] == [0, 0]
    trained = [[line.split(": training")[0] for line in out.splitlines() if ": training" in line] for out in outputs]
    assert all(trained) and sorted(trained[0] + trained[1]) == sorted(f"miniature smoke {f} seed {s}" for f, s in pairs)
    assert weights_digest(MiniatureRun(run.root)) == weights_digest(smoke)


def test_a_builder_left_with_only_others_builds_does_other_work_instead_of_waiting(tmp_path):
    run = prepare_miniature("smoke", tmp_path)
    calls = []

    def meanwhile() -> bool:
        calls.append(time.time())
        if len(calls) == 3:
            raise InterruptedError  # stop the test's builder
        return True  # it did some work: no sleep before looking at the builds again

    with exclusive(str(run.root / "moe" / "seed0") + ".lock"), pytest.raises(InterruptedError):
        build_all_series(run, [("moe", 0)], poll_seconds=5, meanwhile=meanwhile)
    assert len(calls) == 3 and calls[-1] - calls[0] < 1  # no 5-second waits between them
    assert not run.is_built("moe", 0)


def test_hit_at_10_comes_back_in_step_order(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"preset": "x", "prior_baseline_hit_at_10": 0.8}))
    (tmp_path / "moe" / "seed0").mkdir(parents=True)
    recorded = {"hit_at_10": {"120": 0.5, "16": 0.1, "8": 0.0}}
    (tmp_path / "moe" / "seed0" / "series.json").write_text(json.dumps(recorded, sort_keys=True))
    assert list(MiniatureRun(tmp_path).hit_at_10("moe").items()) == [(8, 0.0), (16, 0.1), (120, 0.5)]


def test_width_scaled_init_keeps_the_paper_models_input_scale():
    """0.02 at OLMoE's hidden 2048 is 0.02·√32 = 0.1131 at hidden 64; the built model draws its weights with it."""
    assert width_scaled_init(64, 2048) == 0.1131 and width_scaled_init(4096, 4096) == 0.02
    shape = PRESETS["default"].moe
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(shape.config(256, 64, {}))
    weight = model.model.layers[0].self_attn.q_proj.weight
    assert weight.std().item() == pytest.approx(shape.initializer_range, rel=0.02)
