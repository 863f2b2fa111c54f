"""The fused exact kernel (lpi_core/fused.py): the materialised path's numbers at real dimensions,
bits that do not depend on the thread count, and a clear fallback where it does not compile."""

import warnings

import pytest
import torch

from lpi_core import attribute, fused
from lpi_core.lpi import log_prob_increase, neuron_lpi
from lpi_core.reproducible import single_thread_ops
from tests.helpers import facts, needs_fused_kernel, tiny_lm

OLMOE_VOCAB, OLMOE_ACTIVE_NEURONS = 50304, 8 * 1024  # a token's 8 routed experts × 1,024 neurons


def real_dimension_layer(examples: int = 2, neurons: int = OLMOE_ACTIVE_NEURONS):
    """Base logits, coefficients and images at OLMoE-1B-7B's vocabulary. A unit's image W_U · column
    (both drawn at std 0.02, hidden 2048, through a frozen norm scaling by √2048) has entries of
    std 0.02² · 2048 ≈ 0.82; coefficients of real activations' size."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(neurons, OLMOE_VOCAB, generator=generator) * 0.82
    base = torch.randn(examples, OLMOE_VOCAB, generator=generator) * 4
    coefficients = torch.randn(examples, neurons, generator=generator) * 3
    target = torch.randint(0, OLMOE_VOCAB, (examples,), generator=generator)
    return base, coefficients, images, target


def test_fused_equals_the_float64_formula_on_a_real_dimension_layer():
    """Every 16th of a token's 8,192 active neurons against the explicit formula in float64: the
    fused pass within 1e-4 (measured: 8e-6), closer than the materialised path (1.1e-4)."""
    needs_fused_kernel()
    base, coefficients, images, target = real_dimension_layer()
    with single_thread_ops():
        one_pass = neuron_lpi(base, coefficients, images, target, fused=True)
        materialised = neuron_lpi(base, coefficients, images, target, fused=False)
    assert one_pass.abs().max() > 1.0  # scores large enough for the comparison to mean something
    sample = torch.arange(0, OLMOE_ACTIVE_NEURONS, 16)
    explicit = torch.cat(
        [
            log_prob_increase(base.double(), coefficients[:, part, None].double() * images[None, part].double(), target)
            for part in sample.split(64)
        ],
        1,
    )
    torch.testing.assert_close(one_pass[:, sample].double(), explicit, atol=1e-4, rtol=0)
    torch.testing.assert_close(materialised[:, sample].double(), explicit, atol=3e-4, rtol=0)
    torch.testing.assert_close(one_pass, materialised, atol=3e-4, rtol=0)


@pytest.mark.parametrize("shape", [(1, 3, 50304), (5, 7, 1024), (64, 96, 512)])
def test_fused_bits_do_not_depend_on_the_thread_count(shape):
    needs_fused_kernel()
    rows, neurons, vocab = shape
    generator = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(rows, vocab, generator=generator), -1)
    c, images = torch.randn(rows, neurons, generator=generator), torch.randn(neurons, vocab, generator=generator)
    shift = torch.where(c > 0, c * images.max(-1).values, c * images.min(-1).values)
    before = torch.get_num_threads()
    try:
        sums = []
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            sums.append(fused.compiled_weighted_exp_sum(probs, c, images, shift))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(sums[0], sums[1]) and torch.equal(sums[0], sums[2])
    torch.testing.assert_close(sums[0], fused.weighted_exp_sum(probs, c, images, shift))


def test_where_the_kernel_does_not_compile_auto_falls_back_and_fused_says_why(monkeypatch):
    def broken(*args):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(fused, "compiled_weighted_exp_sum", broken)
    fused.fused_available.cache_clear()
    try:
        with pytest.warns(
            UserWarning,
            match=r"does not compile on cpu \(RuntimeError: no C\+\+ compiler found\); using the materialised path",
        ):
            assert fused.use_fused("auto", torch.device("cpu")) is False
        with pytest.raises(RuntimeError, match="kernel='fused' was asked for"):
            fused.use_fused("fused", torch.device("cpu"))
        assert fused.use_fused("materialised", torch.device("cpu")) is False
    finally:
        fused.fused_available.cache_clear()
    monkeypatch.undo()
    needs_fused_kernel()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fused.use_fused("auto", torch.device("cpu")) is True  # this machine compiles it


def test_a_bad_kernel_name_is_refused_before_any_work():
    prompts, answers = facts(4)
    with pytest.raises(ValueError, match="kernel must be one of"):
        attribute(tiny_lm("olmoe"), prompts, targets=answers, kernel="triton")
