"""Gated-LPI: how much adding a unit's vector u to the residual h raises the target's log-probability.

    LPI(u | h) = log_softmax(proj(h + u))[w] - log_softmax(proj(h))[w]

`proj` is linear (the frozen final norm, see projection.py), so with z = proj(h), d = proj(u):

    LPI = d[w] - (logsumexp(z + d) - logsumexp(z))

For a neuron, u = c · column with a scalar coefficient c (router weight × activation × frozen
scale), so d = c · image(column) and the image is shared by every example.
"""

from __future__ import annotations

import torch

from .fused import compiled_weighted_exp_sum

DEFAULT_MAX_ELEMENTS = 1 << 24


def log_prob_increase(base_logits: torch.Tensor, delta_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """LPI for explicit logit changes. base [B, V], delta [B, ..., V], target [B] -> [B, ...]."""
    extra = delta_logits.dim() - 2
    z = base_logits.reshape(base_logits.shape[0], *([1] * extra), -1)
    w = target.reshape(-1, *([1] * extra), 1)
    gain = delta_logits.gather(-1, w.expand(*delta_logits.shape[:-1], 1)).squeeze(-1)
    return gain - (torch.logsumexp(z + delta_logits, -1) - torch.logsumexp(z, -1))


def neuron_lpi(
    base_logits: torch.Tensor,
    coefficients: torch.Tensor,
    images: torch.Tensor,
    target: torch.Tensor,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    fused: bool = False,
) -> torch.Tensor:
    """LPI of every neuron `n` whose logit change is `coefficients[b, n] · images[n]`.

    LPI[b, n] = c·img[n, w_b] - log Σ_v softmax(z_b)_v · exp(c·img[n, v])      (c = c[b, n])

    which is the formula above with lse(z + d) - lse(z) = log Σ_v softmax(z)_v exp(d_v). The
    exponent is shifted by its maximum M = max_v c·img[n, v] (known from img's row max and min),
    and the weighted sum is a batched matrix-vector product. Entries whose shifted sum underflows
    are recomputed with a plain logsumexp. base [B, V], coefficients [B, N], images [N, V],
    target [B] -> [B, N]; chunked so that no temporary exceeds `max_elements` values. `fused`:
    the exponent, exp and weighted sum in one compiled pass (fused.py) instead of a materialised
    exponent and a matrix product.
    """
    batch, vocab = base_logits.shape
    probs = torch.softmax(base_logits, -1)
    row_max, row_min = images.max(-1).values, images.min(-1).values
    at_target = images.T[target]  # [B, N]
    out = torch.empty_like(coefficients)
    rows_step = max(1, min(batch, max_elements // vocab))
    step = max(1, max_elements // (rows_step * vocab))
    buffer = (
        None if fused else images.new_empty(rows_step * min(step, images.shape[0]) * vocab)
    )  # reused: no page faults per chunk
    for r in range(0, batch, rows_step):
        p = probs[r : r + rows_step]
        for n in range(0, images.shape[0], step):
            c = coefficients[r : r + rows_step, n : n + step]
            img = images[n : n + step]
            shift = torch.where(c > 0, c * row_max[n : n + step], c * row_min[n : n + step])
            if fused:
                weighted = compiled_weighted_exp_sum(p, c, img, shift)
            else:
                exponent = torch.mul(img[None], c[:, :, None], out=buffer[: c.numel() * vocab].view(*c.shape, vocab))
                weighted = torch.bmm(exponent.sub_(shift[:, :, None]).exp_(), p[:, :, None]).squeeze(-1)
            lse_gain = shift + weighted.log()
            underflow = ~(weighted > 1e-30)
            if underflow.any():
                b, k = underflow.nonzero(as_tuple=True)
                z = base_logits[r : r + rows_step][b]
                lse_gain[b, k] = torch.logsumexp(z + c[b, k, None] * img[k], -1) - torch.logsumexp(z, -1)
            out[r : r + rows_step, n : n + step] = c * at_target[r : r + rows_step, n : n + step] - lse_gain
    return out


def lpi_gradient(base_logits: torch.Tensor, unembedding: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """g = W_U[w] - softmax(z) · W_U: the gradient of log_softmax(z + W_U·x)[w] in x at x = 0. [B, H]"""
    return unembedding[target] - torch.softmax(base_logits, -1) @ unembedding


def first_order_neuron_lpi(
    gradient: torch.Tensor, coefficients: torch.Tensor, directions: torch.Tensor
) -> torch.Tensor:
    """The first-order approximation of `neuron_lpi` (opt-in; not Gated-LPI itself): its tangent at c = 0,

        LPI[b, n] ≈ c · (img[n, w_b] - Σ_v softmax(z_b)_v · img[n, v]) = c · (g_b · dir[n])

    with dir[n] = normalize(column n) (img = W_U · dir), so no [N, V] image is ever formed.
    gradient [B, H] (lpi_gradient), coefficients [B, N], directions [N, H] -> [B, N].
    """
    return coefficients * (gradient @ directions.T)
