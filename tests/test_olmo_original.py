"""The original OLMo format (allenai/OLMo-7B's revisions) converted on load into transformers'
OlmoForCausalLM: logits against ai2-olmo's own forward pass, the hub path, and what is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from claims.fixtures.offline_hub import original_state_dict, write_original_olmo
from lpi_core import CheckpointError, attribute, load_model
from lpi_core.olmo_original import load_original_olmo, olmo_config, olmo_state_dict, read_state_dict
from tests.helpers import facts, tiny_lm

FIXTURE = Path(__file__).parent / "data" / "olmo_original"  # written by ai2-olmo 0.6.0: make_fixture.py


def test_converted_logits_equal_ai2_olmos_forward_pass():
    expected = load_file(FIXTURE / "ai2_olmo_logits.safetensors")
    model = load_original_olmo(FIXTURE)
    with torch.no_grad():
        logits = model(input_ids=expected["input_ids"]).logits
    assert logits.shape == expected["logits"].shape == (2, 13, 448)  # the padded embedding size, as OLMo's
    torch.testing.assert_close(logits, expected["logits"], atol=1e-5, rtol=0)
    assert expected["logits"].abs().max() > 1.0


def test_swapping_up_and_gate_would_be_caught():
    """The check above can fail: OLMo's ff_proj is [up; gate], and the other order gives other logits."""
    expected = load_file(FIXTURE / "ai2_olmo_logits.safetensors")
    model = load_original_olmo(FIXTURE)
    for layer in model.model.layers:
        up = layer.mlp.up_proj.weight.data.clone()
        layer.mlp.up_proj.weight.data.copy_(layer.mlp.gate_proj.weight.data)
        layer.mlp.gate_proj.weight.data.copy_(up)
    with torch.no_grad():
        assert (model(input_ids=expected["input_ids"]).logits - expected["logits"]).abs().max() > 0.1


def test_load_model_detects_the_format_and_the_engine_runs_on_it():
    lm = load_model(FIXTURE)
    assert (
        lm.adapter.family == "olmo"
        and lm.model.config.intermediate_size == 88
        and not lm.model.config.tie_word_embeddings
    )
    prompts, answers = facts(6)
    att = attribute(lm, prompts, targets=answers)
    assert att.ffn.shape == (2, 1, 88) and att.attn.shape == (2, 4, 8) and att.ffn.abs().max() > 0


def test_a_revision_in_the_hub_cache_loads_offline_with_its_commit(tmp_path):
    repo_dir = tmp_path / "hub" / "models--allenai--OLMo-7B"
    commit = "a" * 40
    shutil.copytree(FIXTURE, repo_dir / "snapshots" / commit, ignore=shutil.ignore_patterns("*.py", "ai2_olmo_*"))
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "step1000-tokens4B").write_text(commit)
    lm = load_model("allenai/OLMo-7B", revision="step1000-tokens4B", hub_cache=tmp_path / "hub", offline=True)
    assert lm.commit == commit and lm.revision == "step1000-tokens4B" and lm.adapter.family == "olmo"


def test_writing_the_original_format_round_trips(tmp_path):
    native = tiny_lm("olmo", seed=3)
    write_original_olmo(tmp_path / "original", native.model, native.tokenizer)
    written = json.loads((tmp_path / "original" / "config.json").read_text())
    assert written["model_type"] == "hf_olmo" and "d_model" in written and "hidden_size" not in written
    back = load_model(tmp_path / "original")
    ids = torch.tensor([[5, 9, 31, 7, 2]])
    with torch.no_grad():
        assert torch.equal(back.model(input_ids=ids).logits, native.model(input_ids=ids).logits)
    assert set(original_state_dict(native.model)) == set(read_state_dict(tmp_path / "original"))


def test_tied_embeddings_give_the_head_the_embedding():
    original = json.loads((FIXTURE / "config.json").read_text()) | {"weight_tying": True}
    weights = {k: v for k, v in read_state_dict(FIXTURE).items() if k != "model.transformer.ff_out.weight"}
    converted = olmo_state_dict(weights, olmo_config(original))
    assert converted["lm_head.weight"] is weights["model.transformer.wte.weight"]


@pytest.mark.parametrize(
    "setting, value",
    [("scale_logits", True), ("layer_norm_with_affine", True), ("include_bias", True), ("alibi", True)],
)
def test_settings_transformers_cannot_express_are_refused_by_name(tmp_path, setting, value):
    shutil.copytree(FIXTURE, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text()) | {setting: value}
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=rf"cannot express: {setting}={value!r}"):
        load_model(tmp_path / "m")
