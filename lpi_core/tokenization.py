"""Prompts to token ids, and answer strings to the single target token the scores are about."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase


class TargetTokenError(ValueError):
    """An answer string the tokenizer cannot turn into a target token."""


class PromptError(ValueError):
    """A prompt the model cannot take (empty, or longer than its context)."""


def encode_prompts(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], max_positions: int | None = None
) -> list[list[int]]:
    """Token ids of each prompt (with the tokenizer's own special tokens)."""
    if len(prompts) == 0:
        raise PromptError("no prompts given: the data set is empty; pass at least one prompt")
    encoded = []
    for i, prompt in enumerate(prompts):
        ids = tokenizer(prompt)["input_ids"]
        if not ids:
            raise PromptError(f"prompt {i} ({prompt!r}) has no tokens; remove it or fix the template")
        if max_positions is not None and len(ids) > max_positions:
            raise PromptError(
                f"prompt {i} is {len(ids)} tokens, longer than the model's context of {max_positions}; "
                "shorten the prompt or use a model with a longer context"
            )
        encoded.append(ids)
    return encoded


def pad_right(
    sequences: Sequence[Sequence[int]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, last_position): right padding keeps the real tokens' positions."""
    lengths = torch.tensor([len(s) for s in sequences])
    ids = torch.zeros(len(sequences), int(lengths.max()), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
    mask = (torch.arange(ids.shape[1])[None] < lengths[:, None]).long()
    return ids.to(device), mask.to(device), (lengths - 1).to(device)


def target_token_id(tokenizer: PreTrainedTokenizerBase, answer: str) -> int:
    """First token of `" " + answer` as it continues a prompt; a lone leading-space token is skipped."""
    ids = tokenizer(" " + answer, add_special_tokens=False)["input_ids"]
    while ids and tokenizer.decode(ids[:1]).strip() == "":
        ids = ids[1:]
    if not answer.strip() or not ids:
        raise TargetTokenError(f"target {answer!r} gives no token; give a non-empty answer string")
    if tokenizer.unk_token_id is not None and ids[0] == tokenizer.unk_token_id:
        raise TargetTokenError(
            f"target {answer!r} starts with the unknown token: the tokenizer cannot form it; "
            "pass target_ids directly or use a tokenizer whose vocabulary covers it"
        )
    return ids[0]


def target_token_ids(tokenizer: PreTrainedTokenizerBase, answers: Sequence[str]) -> torch.Tensor:
    return torch.tensor([target_token_id(tokenizer, a) for a in answers], dtype=torch.long)


def checked_target_ids(target_ids: Sequence[int] | torch.Tensor, prompts: int, vocab: int) -> torch.Tensor:
    """`target_ids` as a long tensor, after checking there is one per prompt and each is in [0, vocab)."""
    target_ids = torch.as_tensor(target_ids, dtype=torch.long).reshape(-1)
    if target_ids.numel() != prompts:
        raise TargetTokenError(f"{target_ids.numel()} targets for {prompts} prompts; give one target per prompt")
    if target_ids.numel() and (target_ids.min() < 0 or target_ids.max() >= vocab):
        raise TargetTokenError(f"target ids must lie in [0, {vocab}); got {target_ids.min()}..{target_ids.max()}")
    return target_ids
