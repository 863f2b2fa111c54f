"""The miniature run, built from scratch on the smoke preset: loading, determinism, keying, resume."""
from __future__ import annotations

import dataclasses
import hashlib
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

from fixtures.miniature.build import build_miniature, build_series, cache_root, run_directory
from fixtures.miniature.corpus import relation_facts, render_corpus
from fixtures.miniature.presets import PRESETS
from lpi_core import evaluation_set
from lpi_core.atomic import TMP_PREFIX

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


def test_every_checkpoint_loads_through_the_common_loader(smoke):
    moe, dense = smoke.series("moe"), smoke.series("dense")
    assert moe.steps == dense.steps == list(PRESETS["smoke"].checkpoints)
    counts = {}
    for series, family in ((moe, "olmoe"), (dense, "olmo")):
        for checkpoint in series.checkpoints:
            lm = checkpoint.load()
            assert lm.adapter.family == family
        counts[family] = sum(p.numel() for p in lm.model.parameters())
        assert lm.adapter.num_layers == 4 and lm.model.config.hidden_size == 64
    router = 4 * 4 * 64  # 4 layers × 4 experts × hidden
    norms = 4 * 4 * 64 + 64  # OLMoE's weighted norms (input, post-attention, q, k; final); OLMo's have no weights
    assert counts["olmoe"] - router - norms == counts["olmo"]  # same total FFN, attention and embeddings
    assert len(smoke.losses("moe")) == PRESETS["smoke"].train.steps
    assert smoke.losses("moe")[-1] < smoke.losses("moe")[0] - 1.0


def test_same_preset_and_seed_give_bit_identical_checkpoints(smoke, tmp_path):
    again = build_miniature("smoke", cache_dir=tmp_path)
    assert weights_digest(again) == weights_digest(smoke)
    assert again.losses("dense") == smoke.losses("dense")


def test_each_seed_is_its_own_series_with_other_weights(smoke):
    seed1 = build_series(smoke, "moe", seed=1)
    assert smoke.seeds == [0]  # seed 1 has no dense series yet
    assert seed1.seed == 1 and seed1.steps == smoke.series("moe").steps
    first, other = (load_file(Path(s.checkpoints[0].source) / "model.safetensors") for s in (smoke.series("moe"), seed1))
    assert first.keys() == other.keys() and not any(torch.equal(first[k], other[k]) for k in first if k.endswith("proj.weight"))
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
        dataclasses.replace(smoke, shape=dataclasses.replace(smoke.shape, top_k=1)),
    ]
    directories = {run_directory(c, tmp_path) for c in changed}
    assert len(directories) == 4 and run_directory(smoke, tmp_path) not in directories
    text = tmp_path / "mine.txt"
    text.write_text("some text\n")
    assert run_directory(smoke, tmp_path, [text]) != run_directory(smoke, tmp_path)


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv("LPI_CLAIMS_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("LPI_CLAIMS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "lpi-claims"


def test_corpus_is_zipf_skewed_over_every_relation_with_the_evaluation_facts():
    facts = relation_facts()
    assert len(facts) == 11089
    sentences = render_corpus(50_000, zipf_exponent=1.0, seed=0)
    counts = sorted(Counter(sentences).values(), reverse=True)
    assert counts[0] > 50 * counts[len(counts) // 2]  # a heavy head and a long tail
    assert render_corpus(100, seed=3) == render_corpus(100, seed=3) != render_corpus(100, seed=4)
    evaluation = evaluation_set()
    corpus = set(render_corpus(200_000, zipf_exponent=0.8, seed=0))
    rendered = {f"{p} {o}." for p, o in zip(evaluation["prompt"], evaluation["object"])}
    assert len(rendered & corpus) > 300  # evaluation facts occur in their evaluation template
    templates = {s.split(" ")[0] for s in corpus}
    assert len(templates) > 20


def test_the_trainer_takes_the_users_own_text(tmp_path):
    text = tmp_path / "mine.txt"
    text.write_text("\n".join(f"Item {i} is colour {i % 7}." for i in range(3000)) + "\n")
    run = build_miniature("smoke", cache_dir=tmp_path / "cache", text_files=[text])
    assert run.manifest["text_files"] == [str(text)]
    assert not (run.root / "corpus.txt").exists()
    assert run.series("moe").checkpoints[-1].load().tokenizer.tokenize(" colour")  # a tokenizer of this text


def test_a_killed_build_resumes_to_the_same_checkpoints(smoke, tmp_path):
    """SIGKILL after the first checkpoint; the rebuild resumes and matches an uninterrupted build bit for bit."""
    code = f"from fixtures.miniature.build import build_miniature; build_miniature('smoke', cache_dir={str(tmp_path)!r})"
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
