"""The miniature trainer's parts on hand-made inputs: router z-loss, grouped-matmul experts, prior-only baseline."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from claims.fixtures.miniature import presets
from claims.fixtures.miniature.build import MiniatureRun, build_series, prepare_miniature, preset_config, run_directory
from claims.fixtures.miniature.presets import DenseShape, MoeShape
from claims.fixtures.miniature.prior import prior_hits, prior_top_k
from claims.fixtures.miniature.train import TrainConfig, native_bfloat16, router_z_loss, train

SPECIAL = dict(bos_token_id=0, eos_token_id=0, pad_token_id=1)


def test_router_z_loss_is_the_per_layer_mean_of_squared_logsumexp_summed_over_layers():
    first = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # logsumexp: ln 2, ln 4
    second = torch.tensor([[1.0, 1.0]])  # logsumexp: 1 + ln 2
    by_hand = (math.log(2) ** 2 + math.log(4) ** 2) / 2 + (1 + math.log(2)) ** 2
    assert router_z_loss([first, second]).item() == pytest.approx(by_hand, rel=1e-6)


def test_the_trainers_grouped_matmul_experts_compute_the_per_expert_loops_forward_and_gradients():
    torch.manual_seed(0)
    shape = MoeShape(layers=2, hidden=32, heads=8, experts=8, top_k=2, expert_dim=16)
    model = AutoModelForCausalLM.from_config(shape.config(64, 16, SPECIAL))
    ids = torch.randint(64, (3, 16))
    results = {}
    for implementation in ("eager", "grouped_mm"):  # eager: transformers' loop over the experts
        model.set_experts_implementation(implementation)
        model.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        results[implementation] = loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}
    assert results["grouped_mm"][0] == pytest.approx(results["eager"][0], abs=1e-6)
    for name, grad in results["eager"][1].items():
        torch.testing.assert_close(results["grouped_mm"][1][name], grad, atol=1e-6, rtol=1e-4, msg=name)


def test_moe_configs_keep_top_k_weights_unnormalised_and_eager_attention():
    config = MoeShape(layers=1, hidden=32, heads=8, experts=32, top_k=4, expert_dim=12).config(64, 16, SPECIAL)
    assert config.norm_topk_prob is False and config.router_aux_loss_coef == 0.01
    assert config._attn_implementation == "eager"
    assert DenseShape(layers=1, hidden=32, heads=8, ffn_dim=96).config(64, 16, SPECIAL)._attn_implementation == "eager"


def test_prior_baseline_ranks_each_relations_target_tokens_by_corpus_frequency():
    # first tokens: red and rose share token 1; blue 2, green 3; yes 4, no 5
    token_of = {"red": 1, "rose": 1, "blue": 2, "green": 3, "yes": 4, "no": 5}.__getitem__
    counts = {"colour": {"red": 2, "rose": 2, "blue": 3, "green": 1}, "answer": {"yes": 1, "no": 1}}
    assert prior_top_k(counts["colour"], token_of, k=2) == [1, 2]  # red + rose = 4 beats blue = 3
    assert prior_top_k(counts["answer"], token_of, k=1) == [4]  # a tie goes to the smaller token id
    relations = ["colour", "colour", "colour", "colour", "answer", "answer"]
    targets = [token_of(o) for o in ("rose", "blue", "green", "red", "yes", "no")]
    hits = prior_hits(counts, relations, targets, token_of, k=2)
    assert hits.tolist() == [True, True, False, True, True, True]
    assert prior_hits(counts, relations, targets, token_of, k=1).float().mean().item() == pytest.approx(3 / 6)
    with pytest.raises(KeyError, match="no facts of relations"):
        prior_hits(counts, ["size"], [1], token_of)


def test_moe_training_gives_the_same_weights_whatever_the_callers_thread_count():
    shape = MoeShape(layers=2, hidden=64, heads=8, experts=32, top_k=4, expert_dim=24)
    stream = torch.randint(128, (4000,), generator=torch.Generator().manual_seed(1))
    config = TrainConfig(steps=4, batch_size=8, seq_len=32, lr=4e-3, warmup_steps=1)
    weights = []
    for caller_threads in (1, 2):
        torch.set_num_threads(caller_threads)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(shape.config(128, 64, SPECIAL))
        losses = train(model, stream, config, save_at=[], save=lambda *args: None)
        assert torch.get_num_threads() == caller_threads  # restored
        weights.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    assert len(losses) == 4 and torch.equal(weights[0], weights[1])


def test_mixed_precision_runs_the_forward_in_bfloat16_and_keeps_float32_weights():
    shape = DenseShape(layers=2, hidden=32, heads=4, ffn_dim=64)
    stream = torch.randint(64, (2000,), generator=torch.Generator().manual_seed(1))
    results = {}
    for precision in ("bfloat16", None):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(shape.config(64, 32, SPECIAL))
        seen = []
        model.model.layers[0].mlp.down_proj.register_forward_hook(lambda m, a, out: seen.append(out.dtype))
        config = TrainConfig(steps=3, batch_size=4, seq_len=16, lr=1e-3, warmup_steps=1, mixed_precision=precision)
        losses = train(model, stream, config, save_at=[], save=lambda *args: None, progress=False)
        assert seen == [torch.bfloat16 if precision else torch.float32] * 3
        assert {p.dtype for p in model.parameters()} == {torch.float32}
        results[precision] = losses
    assert results["bfloat16"] != results[None]  # bfloat16 rounding shows in the losses ...
    assert results["bfloat16"] == pytest.approx(results[None], rel=0.02)  # ... and changes them little


def test_an_unknown_mixed_precision_is_refused_by_name():
    with pytest.raises(ValueError, match="mixed_precision must be one of.*'float16'"):
        TrainConfig(steps=1, batch_size=1, seq_len=8, lr=1e-3, warmup_steps=1, mixed_precision="float16")


def test_bfloat16_kernels_are_reported_where_the_cpu_has_avx512_as_onednn_needs():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists() or platform.machine() != "x86_64":
        pytest.skip("reads the x86 CPU flags from /proc/cpuinfo")
    if "ONEDNN_MAX_CPU_ISA" in os.environ:
        pytest.skip("ONEDNN_MAX_CPU_ISA caps what oneDNN uses below what the CPU has")
    flags = set(
        next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")).split(":", 1)[1].split()
    )
    if {"avx512bw", "avx512vl", "avx512dq"} <= flags:
        assert native_bfloat16()
    elif not flags & {"avx_ne_convert", "amx_bf16"}:  # AVX2 only (AVX-NE-CONVERT CPUs may have kernels of their own)
        assert not native_bfloat16()


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("native", [True, False])
def test_a_bfloat16_preset_trains_in_float32_where_the_device_has_no_bfloat16_kernels(monkeypatch, native, device):
    monkeypatch.setattr(presets, "native_bfloat16", lambda on: native and on == device)
    default = presets.PRESETS["default"]
    resolved = presets.for_device(default, device)
    assert resolved.train.mixed_precision == ("bfloat16" if native else None) and resolved.train.device == device
    assert dataclasses.replace(resolved, train=default.train) == default  # nothing else changes ...
    assert (resolved.key() == default.key()) == (native and device == "cpu")  # ... but the cache key: the builds differ
    assert presets.for_device(presets.PRESETS["smoke"]) == presets.PRESETS["smoke"]  # float32 on the CPU by choice


def test_an_unknown_training_device_is_refused_by_name():
    with pytest.raises(ValueError, match="device must be one of.*'mps'"):
        TrainConfig(steps=1, batch_size=1, seq_len=8, lr=1e-3, warmup_steps=1, device="mps")


@pytest.mark.parametrize(
    "preset, train, expected",
    [
        ("default", {"mixed_precision": "bfloat16"}, "bfloat16 mixed precision"),
        ("default", {"mixed_precision": "bfloat16", "device": "cuda"}, "bfloat16 mixed precision on a CUDA GPU"),
        (
            "default",
            {"mixed_precision": None},
            "float32 (not the preset's bfloat16 mixed precision: the training device has no bfloat16 kernels)",
        ),
        ("smoke", {"mixed_precision": None, "device": "cpu"}, "float32"),
    ],
)
def test_a_run_says_where_and_in_what_precision_its_models_trained(tmp_path, preset, train, expected):
    (tmp_path / "manifest.json").write_text(json.dumps({"preset": preset, "config": {"train": train}}))
    assert MiniatureRun(tmp_path).training_precision == expected


def test_a_run_built_in_bfloat16_is_found_from_a_cpu_without_bfloat16_kernels(tmp_path, monkeypatch):
    """A report read on another host than the one that built: the lookup falls back to the preset's other precision."""
    smoke = presets.PRESETS["smoke"]
    bf16 = dataclasses.replace(smoke, train=dataclasses.replace(smoke.train, mixed_precision="bfloat16"))
    monkeypatch.setattr(presets, "native_bfloat16", lambda device: True)
    built = prepare_miniature(bf16, tmp_path)
    assert built.manifest["config"]["train"]["mixed_precision"] == "bfloat16"
    monkeypatch.setattr(presets, "native_bfloat16", lambda device: False)
    assert preset_config(bf16).key() != built.manifest["key"]  # this host would build it in float32 ...
    assert run_directory(bf16, tmp_path) == built.root  # ... but reads the bfloat16 build it finds
    assert run_directory(smoke, tmp_path) != built.root  # not another preset's


def test_a_given_config_keeps_its_training_device_and_a_gpu_build_without_cuda_is_refused(tmp_path, monkeypatch):
    smoke = presets.PRESETS["smoke"]
    on_gpu = dataclasses.replace(smoke, train=dataclasses.replace(smoke.train, device="cuda"))
    assert preset_config(on_gpu).train.device == "cuda" and preset_config("smoke").train.device == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run = prepare_miniature(on_gpu, tmp_path)
    with pytest.raises(RuntimeError, match="no CUDA device here: build it on a GPU host"):
        build_series(run, "moe")
    assert not (run.root / "moe" / "seed0" / "series.json").exists()
