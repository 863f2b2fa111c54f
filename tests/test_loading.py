"""Loading from a local hub-format directory, dtypes, and the errors for bad checkpoints."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from lpi_core import (
    SUPPORTED_MODEL_TYPES,
    CheckpointError,
    TargetTokenError,
    UnsupportedArchitectureError,
    attribute,
    load_model,
    wrap_model,
)
from lpi_core.capture import last_position_logits
from lpi_core.tokenization import PromptError, encode_prompts, target_token_id
from tests.helpers import FAMILIES, facts, tiny_lm, tokenizer

PROMPTS, ANSWERS = facts(10)


@pytest.fixture
def saved(tmp_path):
    lm = tiny_lm("olmoe")
    lm.model.save_pretrained(tmp_path)
    lm.tokenizer.save_pretrained(tmp_path)
    return lm, tmp_path


def test_load_local_directory_gives_the_same_model(saved):
    lm, path = saved
    loaded = load_model(path)
    assert loaded.adapter.family == "olmoe" and loaded.name == str(path)
    encoded = encode_prompts(lm.tokenizer, PROMPTS)
    torch.testing.assert_close(last_position_logits(loaded, encoded), last_position_logits(lm, encoded))


def test_load_bfloat16(saved):
    lm, path = saved
    loaded = load_model(path, dtype=torch.bfloat16)
    assert loaded.dtype == torch.bfloat16
    att = attribute(loaded, PROMPTS, targets=ANSWERS)
    assert att.ffn.dtype == torch.float32 and torch.isfinite(att.ffn).all()
    reference = attribute(lm, PROMPTS, targets=ANSWERS)
    assert torch.corrcoef(torch.stack([att.ffn_layer, reference.ffn_layer]))[0, 1] > 0.95


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_gets_its_adapter(family):
    assert tiny_lm(family).adapter.family == {"mistral": "llama", "qwen2": "llama"}.get(family, family)


def test_unsupported_architecture_names_the_supported_ones(tmp_path):
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=len(tokenizer())))
    with pytest.raises(UnsupportedArchitectureError, match="gpt2.*olmoe, olmo, olmo2, olmo3, llama.*gpt_neox"):
        wrap_model(model, tokenizer())
    model.save_pretrained(tmp_path)
    with pytest.raises(UnsupportedArchitectureError, match="supported model types") as err:
        load_model(tmp_path)
    assert all(t in str(err.value) for t in SUPPORTED_MODEL_TYPES)


def test_truncated_or_missing_weights(saved):
    _, path = saved
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated"):
        load_model(path)
    weights.unlink()
    with pytest.raises(CheckpointError, match="missing or truncated"):
        load_model(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no loadable checkpoint"):
        load_model(tmp_path / "nowhere")


def test_targets_the_tokenizer_cannot_form():
    tok = tokenizer()
    assert tok.decode([target_token_id(tok, "Paris")]).strip() != ""
    for bad in ("", "   "):
        with pytest.raises(TargetTokenError, match="no token"):
            target_token_id(tok, bad)
    lm = tiny_lm("olmo")
    with pytest.raises(TargetTokenError, match="one target per prompt"):
        attribute(lm, PROMPTS, targets=ANSWERS[:3])
    with pytest.raises(TargetTokenError, match=r"\[0, 400\)"):
        attribute(lm, PROMPTS[:2], target_ids=[1, 400])


def test_prompt_errors():
    lm = tiny_lm("llama")
    with pytest.raises(PromptError, match="empty"):
        attribute(lm, [])
    with pytest.raises(PromptError, match="longer than the model's context of 64"):
        attribute(lm, ["word " * 100])


def test_target_outside_a_word_vocabulary_is_the_unknown_token():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel({"<unk>": 0, "Paris": 1, "The": 2}, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=words, unk_token="<unk>")
    assert target_token_id(tok, "Paris") == 1
    with pytest.raises(TargetTokenError, match="cannot form it"):
        target_token_id(tok, "Lyon")
