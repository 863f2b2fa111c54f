"""`attribute`: exact Gated-LPI of every FFN/expert neuron, attention neuron, head and layer.

One forward pass captures the last-position internals (capture.py); then, layer by layer, the
vocabulary images of the layer's neuron columns are computed once and every example's scores
need only a logsumexp per neuron (lpi.neuron_lpi); modes.py has the opt-in first-order mode.

An attention neuron (h, d) adds Σ_j a_hj · v_j[h, d] · W_O[:, (h, d)] over the source positions j.
`attn_positions="sum"` scores that sum with one LPI (the default); "each" sums the LPIs of the
positions' terms, LPI(a_hj · v_j[h, d] · W_O[:, (h, d)]) over j (Yu & Ananiadou's reading).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Literal

import torch

from .adapters import Adapter
from .bars import Progress, progress_bar
from .capture import LastPositionCapture, capture_last_position
from .fused import KERNELS, use_fused
from .loading import LanguageModel
from .lpi import log_prob_increase
from .memory import MIN_ELEMENTS, chunk_elements, halving_on_oom
from .modes import MODES, ExactScores, scores_at
from .projection import FrozenProjection
from .reproducible import parallel_map, single_thread_ops
from .tokenization import checked_target_ids, encode_prompts, target_token_ids

if TYPE_CHECKING:
    import xarray as xr

    from .labels import UnitNames

ATTN_POSITIONS = ("sum", "each")


@dataclass
class Attribution:
    """Gated-LPI scores; with `reduce="none"` every score tensor has a leading examples dimension."""

    ffn: torch.Tensor  # [layers, experts, ffn_dim]
    shared_ffn: torch.Tensor | None  # [layers, shared_ffn_dim]
    attn: torch.Tensor  # [layers, heads, head_dim]
    heads: torch.Tensor  # [layers, heads]
    ffn_layer: torch.Tensor  # [layers]
    attn_layer: torch.Tensor  # [layers]
    target_ids: torch.Tensor  # [examples]
    target_rank: torch.Tensor  # [examples] rank of the target in the model's own logits (0 = top-1)

    def mean(self) -> Attribution:
        """The dataset-level importance I(n): the mean over examples of a `reduce="none"` result."""
        scores = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("ffn", "shared_ffn", "attn", "heads", "ffn_layer", "attn_layer"):
            if scores[name] is not None:
                scores[name] = scores[name].mean(0)
        return Attribution(**scores)

    def to_xarray(self, names: UnitNames | None = None) -> xr.Dataset:
        """The per-unit scores as an xarray.Dataset (labels.py): dims `layer, expert, neuron` (ffn),
        `layer, head, dim` (attn), `layer, head` (heads), `layer`; with reduce="none" `example` comes
        first and `target_id` is kept; `names` (labels.unit_names(model)) adds the module paths."""
        from .labels import SCORES, scores_dataset

        per_example = self.ffn_layer.dim() == 2
        dataset = scores_dataset(
            {name: getattr(self, name) for name in SCORES}, names, ("example",) if per_example else ()
        )
        if not per_example:
            return dataset
        return dataset.assign(target_id=("example", self.target_ids.cpu().numpy())).assign_coords(
            example=range(self.ffn.shape[0])
        )


def attribute(
    lm: LanguageModel,
    prompts: Sequence[str],
    targets: Sequence[str] | None = None,
    target_ids: Sequence[int] | torch.Tensor | None = None,
    reduce: Literal["mean", "none"] = "mean",
    batch_size: int = 16,
    max_elements: int | None = None,
    progress: Progress = False,
    mode: str = "exact",
    attn_positions: str = "sum",
    kernel: str = "auto",
) -> Attribution:
    """Gated-LPI scores of every unit of `lm` for the prompts' targets (exact unless `mode` is
    "first-order", see modes.py; attention neurons by `attn_positions`, see the module docstring;
    the exact neuron kernel by `kernel`: auto, fused or materialised, see fused.py).

    Targets: `target_ids` if given, else the first token of each `targets` answer, else the
    model's own top-1 prediction.
    """
    if reduce not in ("mean", "none"):
        raise ValueError(f"reduce must be 'mean' or 'none', not {reduce!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if attn_positions not in ATTN_POSITIONS:
        raise ValueError(f"attn_positions must be one of {ATTN_POSITIONS}, not {attn_positions!r}")
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, not {kernel!r}")
    encoded = encode_prompts(lm.tokenizer, prompts, lm.max_positions)
    if target_ids is None and targets is not None:
        target_ids = target_token_ids(lm.tokenizer, targets)
    if target_ids is not None:  # checked before the forward pass
        target_ids = checked_target_ids(target_ids, len(encoded), lm.adapter.unembedding.shape[0])
    captured = capture_last_position(
        lm, encoded, batch_size=batch_size, progress=progress, positions=attn_positions == "each"
    )
    if target_ids is None:
        target_ids = captured.logits.argmax(-1)
    scores = score_capture(
        lm.adapter, captured, target_ids, max_elements=max_elements, progress=progress, mode=mode, kernel=kernel
    )
    return scores.mean() if reduce == "mean" else scores


def target_rank(logits: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
    """Rank of each target among its row's logits (0 = the top-1 token)."""
    at_target = logits.gather(-1, target_ids[:, None])
    return (logits > at_target).sum(-1)


@torch.no_grad()
def score_capture(
    adapter: Adapter,
    captured: LastPositionCapture,
    target_ids: torch.Tensor,
    max_elements: int | None = None,
    progress: Progress = False,
    mode: str = "exact",
    kernel: str = "auto",
) -> Attribution:
    """Per-example scores of every unit, from one capture (see module docstring and modes.py; the
    exact neuron kernel by `kernel`, fused.py).

    Each torch op runs on one thread and the layers are scored side by side on the CPU's threads,
    so the scores are the same bits whatever the thread count. `max_elements` bounds each temporary
    (default: from the device's free memory); a layer that runs out of GPU memory is redone with
    smaller chunks.
    """
    device = adapter.unembedding.device
    layers = captured.layer_input.shape[1]
    bar = progress_bar(progress, total=layers, desc="attribute", leave=False)

    @torch.no_grad()  # grad mode is per thread: the pool's threads need it too
    def layer_scores(l: int) -> dict[str, torch.Tensor | None]:
        scores = halving_on_oom(
            lambda size: _layer_scores(adapter, captured, l, proj, w, size, mode, fused),
            max_elements or chunk_elements(device),
            MIN_ELEMENTS,
            f"attribution of layer {l}",
        )
        bar.update()
        return scores

    fused = mode == "exact" and use_fused(
        kernel, device
    )  # compiled here, once, not in the layers' threads; first-order needs no kernel
    with single_thread_ops() as threads:  # the same bits whatever the thread count (reproducible.py)
        proj = FrozenProjection.from_final_residual(adapter, captured.final_residual.to(device))
        w = target_ids.to(device)
        per_layer = parallel_map(layer_scores, range(layers), threads if device.type == "cpu" else 1)
    bar.close()
    stacked = {
        name: torch.stack([s[name] for s in per_layer], 1) for name in per_layer[0] if per_layer[0][name] is not None
    }
    return Attribution(
        ffn=stacked["ffn"],
        shared_ffn=stacked.get("shared_ffn"),
        attn=stacked["attn"],
        heads=stacked["heads"],
        ffn_layer=stacked["ffn_layer"],
        attn_layer=stacked["attn_layer"],
        target_ids=target_ids.cpu(),
        target_rank=target_rank(captured.logits, target_ids.cpu()),
    )


def _layer_scores(
    adapter: Adapter,
    captured: LastPositionCapture,
    l: int,
    proj: FrozenProjection,
    w: torch.Tensor,
    max_elements: int,
    mode: str,
    fused: bool,
) -> dict[str, torch.Tensor | None]:
    """Layer `l`'s scores of every example: layer, head, attention-neuron and FFN-neuron level (on the CPU)."""
    device = w.device
    n, heads, head_dim = captured.layer_input.shape[0], adapter.num_heads, adapter.head_dim
    x_in = captured.layer_input[:, l].to(device)
    attn_out = captured.attn_output[:, l].to(device)
    z_attn, d_attn = proj.base_logits(x_in), proj.logits(attn_out)
    # proj is linear: proj(x_in + attn_out), one vocabulary projection saved; a parallel FFN reads x_in itself
    z_ffn = z_attn if adapter.parallel_residual else z_attn + d_attn
    scores = {
        "attn_layer": log_prob_increase(z_attn, d_attn, w),
        "ffn_layer": log_prob_increase(z_ffn, proj.logits(captured.ffn_output[:, l].to(device)), w),
    }
    at_attn, at_ffn = (scores_at(mode, proj, z, w, max_elements, fused) for z in (z_attn, z_ffn))
    attn_gain, attn_weight = _frozen_post_norm(adapter.attn_post_norm(l), captured.attn_post_scale, l, x_in)
    ffn_gain, ffn_weight = _frozen_post_norm(adapter.ffn_post_norm(l), captured.ffn_post_scale, l, x_in)
    w_o = adapter.o_proj(l).weight.detach().float() * attn_weight[:, None]  # [hidden, heads * head_dim]
    attn_scale = proj.scale * attn_gain
    values = captured.head_values[:, l].to(device)  # [N, heads * head_dim]
    scores["heads"] = at_attn.vectors(
        torch.einsum("nhd,ehd->nhe", values.view(n, heads, head_dim), w_o.view(-1, heads, head_dim))
        * attn_gain[:, None, None]
    )
    scores["attn"] = _attention_neuron_scores(captured, l, values, attn_scale, w_o, at_attn).view(n, heads, head_dim)
    ffn_scale = proj.scale * ffn_gain
    scores["ffn"] = _ffn_neuron_scores(adapter, captured, l, ffn_scale, ffn_weight, at_ffn)
    scores["shared_ffn"] = None
    if adapter.shared_ffn_dim is not None:
        weights, gate = adapter.shared_expert(l)
        x = captured.ffn_input[:, l].to(device)
        g = torch.sigmoid(gate(x.to(gate.weight.dtype)).float())  # [N, 1]
        coeff = (g * ffn_scale[:, None]) * weights.coefficients(x, 0).float()
        scores["shared_ffn"] = at_ffn.neurons(coeff, weights.down[0].T * ffn_weight)
    return {name: None if v is None else v.cpu() for name, v in scores.items()}


def _frozen_post_norm(
    norm: torch.nn.Module | None, post_scale: torch.Tensor | None, layer: int, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A sublayer post-norm frozen at its input's statistics: u = g ⊙ v · s_b (adapters/olmo2.py), as
    the per-example gain s [N] and the weight g [hidden]; without a post-norm, ones (u = v, the same bits).
    `like`: the layer's residuals [N, hidden]."""
    if norm is None:
        return like.new_ones(like.shape[0]), like.new_ones(like.shape[1])
    return post_scale[:, layer].to(like.device), norm.weight.detach().float().to(like.device)


def _attention_neuron_scores(
    captured: LastPositionCapture,
    layer: int,
    values: torch.Tensor,
    scale: torch.Tensor,
    w_o: torch.Tensor,
    at_attn: ExactScores,
) -> torch.Tensor:
    """[N, heads * head_dim]: one LPI of each neuron's summed value, or (per-position terms captured)
    the sum over source positions of each term's LPI; a zero term (past a prompt's end) adds 0."""
    if captured.position_values is None:
        return at_attn.neurons(values * scale[:, None], w_o.T)
    terms = captured.position_values[:, layer].to(values.device)  # [N, heads, positions, head_dim]
    total = torch.zeros_like(values)
    for j in range(terms.shape[2]):
        coeff = terms[:, :, j].reshape(values.shape) * scale[:, None]
        total += torch.where(coeff == 0, 0.0, at_attn.neurons(coeff, w_o.T))
    return total


def _ffn_neuron_scores(
    adapter: Adapter,
    captured: LastPositionCapture,
    layer: int,
    scale: torch.Tensor,
    column_weight: torch.Tensor,
    at_ffn: ExactScores,
) -> torch.Tensor:
    """[N, experts, ffn_dim] scores of layer `layer`'s FFN neurons (each down column times `column_weight`,
    a frozen post-norm's g); unselected experts score 0."""
    device = scale.device
    weights = adapter.ffn_weights(layer)
    x = captured.ffn_input[:, layer].to(device)
    n = x.shape[0]
    out = torch.zeros(n, adapter.num_experts, adapter.ffn_dim)
    for e in range(adapter.num_experts):
        if captured.router_index is None:
            rows = torch.arange(n, device=device)
            gate = torch.ones(n, device=device)
        else:
            rows, slot = (captured.router_index[:, layer] == e).nonzero(as_tuple=True)
            gate = captured.router_weights[:, layer][rows, slot].to(device)
            rows = rows.to(device)
        if rows.numel() == 0:
            continue
        coeff = (gate * scale[rows])[:, None] * weights.coefficients(x[rows], e).float()
        out[rows.cpu(), e] = at_ffn.neurons(coeff, weights.down[e].T * column_weight, rows).cpu()
    return out
