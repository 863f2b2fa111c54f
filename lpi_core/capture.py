"""One forward pass with hooks, keeping at each prompt's last position what the scores need.

Hook points per layer `l` (no edits to transformers):
  layer_input[l]    input of decoder layer l (the residual stream)
  attn_output[l]    what the attention adds to the residual (through its post-norm, where there is one)
  head_values[l]    input of o_proj: per-head attention-weighted values, [heads * head_dim]
  ffn_input[l]      input of the FFN/MoE block (after its pre-norm)
  ffn_output[l]     what the FFN/MoE block adds to the residual (through its post-norm, where there is one)
  attn_post_scale[l], ffn_post_scale[l]   with sublayer post-norms (OLMo-2): 1 / sqrt(mean(y²) + eps)
                    of the sublayer output y entering the norm, [N, L]
  router_weights[l], router_index[l]   the router's top-k weights and expert ids (MoE only)
and once: final_residual (input of the final norm) and the model's last-position logits.
With `positions=True` (eager attention) also
  position_values[l]  each source position's term of head_values: attention weight × value,
                      [heads, positions, head_dim] (they sum to head_values; zero past a prompt)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .bars import Progress, progress_bar
from .loading import LanguageModel
from .memory import release_cached_memory
from .reproducible import single_thread_ops
from .tokenization import pad_right


@dataclass
class LastPositionCapture:
    layer_input: torch.Tensor  # [N, L, H]
    attn_output: torch.Tensor  # [N, L, H]
    head_values: torch.Tensor  # [N, L, heads * head_dim]
    ffn_input: torch.Tensor  # [N, L, H]
    ffn_output: torch.Tensor  # [N, L, H]
    router_weights: torch.Tensor | None  # [N, L, k]
    router_index: torch.Tensor | None  # [N, L, k]
    final_residual: torch.Tensor  # [N, H]
    logits: torch.Tensor  # [N, V]
    position_values: torch.Tensor | None = None  # [N, L, heads, positions, head_dim]
    attn_post_scale: torch.Tensor | None = None  # [N, L]
    ffn_post_scale: torch.Tensor | None = None  # [N, L]


def _first_arg(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


@contextmanager
def _recording_hooks(
    lm: LanguageModel, batch: dict[str, dict], last: list[torch.Tensor], positions: bool
) -> Iterator[None]:
    """Register the hooks; each keeps its tensor at the current batch's last positions in `batch`."""
    adapter = lm.adapter
    values: dict[int, torch.Tensor] = {}

    def at_last(x: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(x.shape[0], device=x.device)
        return x[rows, last[0]].detach().float().cpu()

    def keep(key: str, layer: int, value: torch.Tensor) -> None:
        batch.setdefault(key, {})[layer] = at_last(value)

    def keep_post_norm(key: str, scale: str, layer: int, norm: torch.nn.Module) -> list:
        """The norm's output as the sublayer's `key`, and its input's frozen scale as `scale`."""
        return [
            norm.register_forward_pre_hook(
                lambda m, a, l=layer: keep(scale, l, torch.rsqrt(a[0].float().pow(2).mean(-1) + m.variance_epsilon))
            ),
            norm.register_forward_hook(lambda m, a, out, l=layer: keep(key, l, out)),
        ]

    handles = []
    for l in range(adapter.num_layers):
        handles += [
            adapter.layers[l].register_forward_pre_hook(
                lambda m, a, k, l=l: keep("layer_input", l, _first_arg(a, k)), with_kwargs=True
            ),
            adapter.o_proj(l).register_forward_pre_hook(lambda m, a, l=l: keep("head_values", l, a[0])),
            adapter.mlp(l).register_forward_pre_hook(
                lambda m, a, k, l=l: keep("ffn_input", l, _first_arg(a, k)), with_kwargs=True
            ),
        ]
        attn_norm, ffn_norm = adapter.attn_post_norm(l), adapter.ffn_post_norm(l)
        handles += (
            keep_post_norm("attn_output", "attn_post_scale", l, attn_norm)
            if attn_norm is not None
            else [adapter.attention(l).register_forward_hook(lambda m, a, out, l=l: keep("attn_output", l, out[0]))]
        )
        handles += (
            keep_post_norm("ffn_output", "ffn_post_scale", l, ffn_norm)
            if ffn_norm is not None
            else [adapter.mlp(l).register_forward_hook(lambda m, a, out, l=l: keep("ffn_output", l, out))]
        )
        if positions:
            # v_proj's output itself (not a copy): an in-place clamp of the values (OLMo's clip_qkv) shows in it
            handles.append(
                adapter.v_proj(l).register_forward_hook(
                    lambda m, a, out, l=l: values.__setitem__(l, adapter.value_states(out))
                )
            )
            handles.append(
                adapter.attention(l).register_forward_hook(
                    lambda m, a, out, l=l: batch.setdefault("position_values", {}).__setitem__(
                        l, _position_terms(adapter, out[1], values.pop(l), last[0])
                    )
                )
            )
        router = adapter.router(l)
        if router is not None:

            def keep_route(m, a, out, l=l):
                batch = last[0].shape[0]
                keep("router_weights", l, out[1].reshape(batch, -1, out[1].shape[-1]))
                keep("router_index", l, out[2].reshape(batch, -1, out[2].shape[-1]))

            handles.append(router.register_forward_hook(keep_route))
    handles.append(
        adapter.final_norm.register_forward_pre_hook(
            lambda m, a, k: keep("final_residual", -1, _first_arg(a, k)), with_kwargs=True
        )
    )
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _position_terms(adapter, weights: torch.Tensor | None, values: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """[B, heads, positions, head_dim]: the last query's attention weight on each source position × its value."""
    if weights is None:
        raise RuntimeError("the attention returned no weights: per-position terms need eager attention")
    rows = torch.arange(weights.shape[0], device=weights.device)
    at_last = weights[rows, :, last]  # [B, heads, positions]
    b, t = values.shape[:2]
    v = values.reshape(b, t, -1, adapter.head_dim).transpose(1, 2)  # [B, kv_heads, positions, head_dim]
    v = v.repeat_interleave(adapter.num_heads // v.shape[1], dim=1)
    return (at_last[..., None].float() * v.float()).detach().cpu()


@contextmanager
def _eager_attention(lm: LanguageModel, needed: bool) -> Iterator[None]:
    """Run the model with eager attention (the kernel that returns its weights) while `needed`."""
    previous = lm.model.config._attn_implementation
    if needed and previous != "eager":
        lm.model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if needed and previous != "eager":
            lm.model.set_attn_implementation(previous)


@torch.no_grad()
def last_position_logits(
    lm: LanguageModel,
    encoded: Sequence[Sequence[int]],
    batch_size: int = 16,
    before_batch: Callable[[torch.Tensor], None] | None = None,
    after_batch: Callable[[], None] | None = None,
    progress: Progress = False,
) -> torch.Tensor:
    """Forward the prompts in right-padded batches of similar lengths (shortest first: little padding);
    the next-token logits at each last position, [N, V], in the prompts' order.

    `before_batch(last_positions)` and `after_batch()` frame each forward pass that succeeds (in the
    batches' order, see `length_order`); a batch that runs out of GPU memory is split in two and
    retried. Every op runs on one thread, so the logits are the same bits whatever the thread count
    (reproducible.py).
    """
    order = length_order(encoded)
    by_length = [encoded[i] for i in order]
    logits = []
    batches = range(0, len(encoded), batch_size)
    with single_thread_ops():
        for start in progress_bar(progress, batches, desc="forward", leave=False):
            logits.append(_forward(lm, by_length[start : start + batch_size], before_batch, after_batch))
    return torch.cat(logits)[order.argsort()]


def length_order(encoded: Sequence[Sequence[int]]) -> torch.Tensor:
    """The order in which `last_position_logits` forwards the prompts: by length, ties in input order."""
    return torch.tensor(sorted(range(len(encoded)), key=lambda i: len(encoded[i])), dtype=torch.long)


def _forward(
    lm: LanguageModel,
    prompts: Sequence[Sequence[int]],
    before_batch: Callable[[torch.Tensor], None] | None,
    after_batch: Callable[[], None] | None,
) -> torch.Tensor:
    try:
        ids, mask, last = pad_right(prompts, lm.device)
        if before_batch is not None:
            before_batch(last)
        out = lm.model(input_ids=ids, attention_mask=mask, use_cache=False)
        logits = out.logits[torch.arange(ids.shape[0], device=ids.device), last].float().cpu()
    except torch.cuda.OutOfMemoryError as err:
        if len(prompts) == 1:
            raise torch.cuda.OutOfMemoryError(
                f"the forward pass of a single {len(prompts[0])}-token prompt is out of GPU memory; "
                "free the GPU or run on the CPU"
            ) from err
        logits = None
    if logits is None:  # split outside the handler, so that the failed pass's tensors are freed
        release_cached_memory()
        half = len(prompts) // 2
        return torch.cat(
            [
                _forward(lm, prompts[:half], before_batch, after_batch),
                _forward(lm, prompts[half:], before_batch, after_batch),
            ]
        )
    if after_batch is not None:
        after_batch()
    return logits


def capture_last_position(
    lm: LanguageModel,
    encoded: Sequence[Sequence[int]],
    batch_size: int = 16,
    progress: Progress = False,
    positions: bool = False,
) -> LastPositionCapture:
    """Run `encoded` prompts through the model and keep the last-position internals of every layer
    (and, with `positions`, each source position's term of the heads' values)."""
    record: dict[str, dict[int, list[torch.Tensor]]] = {}
    batch: dict[str, dict[int, torch.Tensor]] = {}
    last: list[torch.Tensor] = [torch.empty(0)]

    def before_batch(positions: torch.Tensor) -> None:
        batch.clear()
        last[0] = positions

    def after_batch() -> None:
        for key, layers in batch.items():
            for layer, value in layers.items():
                record.setdefault(key, {}).setdefault(layer, []).append(value)

    with _eager_attention(lm, positions), _recording_hooks(lm, batch, last, positions):
        logits = last_position_logits(lm, encoded, batch_size, before_batch, after_batch, progress=progress)
    restore = length_order(encoded).argsort()  # the hooks recorded the batches in length order

    def stacked(key: str) -> torch.Tensor | None:
        if key not in record:
            return None
        per_layer = [torch.cat(_padded(record[key][l])) for l in sorted(record[key])]
        return torch.stack(per_layer, dim=1)[restore]

    index = stacked("router_index")
    return LastPositionCapture(
        layer_input=stacked("layer_input"),
        attn_output=stacked("attn_output"),
        head_values=stacked("head_values"),
        ffn_input=stacked("ffn_input"),
        ffn_output=stacked("ffn_output"),
        router_weights=stacked("router_weights"),
        router_index=None if index is None else index.long(),
        final_residual=torch.cat(record["final_residual"][-1])[restore],
        logits=logits,
        position_values=stacked("position_values"),
        attn_post_scale=stacked("attn_post_scale"),
        ffn_post_scale=stacked("ffn_post_scale"),
    )


def _padded(batches: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per-position terms of batches of different prompt lengths, zero-padded to the longest (dim 2)."""
    if batches[0].dim() < 4:
        return batches
    longest = max(b.shape[2] for b in batches)
    return [torch.nn.functional.pad(b, (0, 0, 0, longest - b.shape[2])) for b in batches]
