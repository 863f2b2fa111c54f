"""On a model trained for a few seconds on the facts: HIT@10 moves, and the heads Gated-LPI ranks
highest matter more to HIT@10 than random heads do."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import AutoModelForCausalLM, OlmoConfig

from lpi_core import attribute, hit_at_k, wrap_model
from lpi_core.tokenization import target_token_ids
from tests.helpers import facts, tokenizer

PROMPTS, ANSWERS = facts()


def train_on_facts(model, tok, steps: int = 200, batch: int = 64, seed: int = 0) -> None:
    seqs = [tok(p + " " + a)["input_ids"] + [tok.eos_token_id] for p, a in zip(PROMPTS, ANSWERS)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        rows = [seqs[i] for i in torch.randint(len(seqs), (batch,), generator=generator).tolist()]
        ids = torch.full((batch, max(map(len, rows))), tok.pad_token_id)
        mask = torch.zeros_like(ids)
        for r, seq in enumerate(rows):
            ids[r, : len(seq)] = torch.tensor(seq)
            mask[r, : len(seq)] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


@pytest.fixture(scope="module")
def trained():
    tok = tokenizer()
    torch.manual_seed(0)
    config = OlmoConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=8,
        max_position_embeddings=64,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    lm = wrap_model(AutoModelForCausalLM.from_config(config), tok)
    targets = target_token_ids(tok, ANSWERS)
    before = hit_at_k(lm, PROMPTS, targets)
    train_on_facts(lm.model, tok)
    return lm, targets, before


def test_training_moves_hit_at_10(trained):
    lm, targets, before = trained
    assert before < 0.1
    assert hit_at_k(lm, PROMPTS, targets) > 0.4


def test_top_heads_matter_more_than_random_heads(trained):
    lm, targets, _ = trained
    base = hit_at_k(lm, PROMPTS, targets)
    heads = attribute(lm, PROMPTS, target_ids=targets).heads
    per_layer = heads.shape[1]
    top = [(int(i) // per_layer, int(i) % per_layer) for i in heads.flatten().argsort(descending=True)[:3]]
    top_drop = base - hit_at_k(lm, PROMPTS, targets, mask_heads=top)
    every_head = [(l, h) for l in range(heads.shape[0]) for h in range(per_layer)]
    rng = random.Random(0)
    random_drops = [base - hit_at_k(lm, PROMPTS, targets, mask_heads=rng.sample(every_head, 3)) for _ in range(5)]
    assert top_drop > max(random_drops), (top_drop, random_drops)
