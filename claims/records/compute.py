"""One checkpoint's record, computed: the input of every claim (storage is in store.py, its code's
digest in provenance.py).

A record holds, for the run's examples: the dataset-level Gated-LPI of every unit (FFN neurons,
attention neurons, heads, layers), the same over `bootstrap` resamples of the examples (the rows
of `resample_weights(examples, bootstrap)`, identical for every checkpoint and model, so two
models' numbers can be paired), the unit scores over one half of each of `SPLITS` random splits
of the examples (`split_half_weights`: the split-half noise ceiling and the split-half spread of
the set statistics), and HIT@10 and HIT@1 per example with and without the ablations (top-1 head,
top-10 heads, top-1% FFN neurons; in-sample, held-out and random sets: ablations.py). With
`st_rank="mean-abs"` the S_t reading (mean |I| per unit) is stored beside the signed scores under
`st_ffn`, `st_attn` (and their resamples and halves).
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import asdict, dataclass

import datasets
import numpy as np
import torch
import transformers

from claims.fixtures.series import Checkpoint
from claims.records.ablations import ablation_ranks
from claims.records.provenance import code_version
from lpi_core import Attribution, LanguageModel, attribute
from lpi_core.ablation import target_ranks
from lpi_core.bars import Progress
from lpi_core.fused import use_fused
from lpi_core.metrics import resample_weights, resampled_means, split_half_weights
from lpi_core.reproducible import numeric_environment
from lpi_core.tokenization import target_token_ids

RECORD_FORMAT = 4  # 4: held-out and random-set ablations, HIT@1
SPLITS = 200  # random splits into halves per record (at most `bootstrap`)
RANKINGS = ("abs", "positive")  # ablated units: the S_t ranking (largest |I|), or the largest positive I
TARGETS = ("answer", "predicted")  # the attributed token: the answer's first token, or the model's top-1
ST_RANKS = ("abs-mean", "mean-abs")  # S_t ranks units by |mean I| (the paper's I_t), or by mean |I|
ATTN_POSITIONS = (
    "sum",
    "each",
)  # an attention neuron: one LPI of its summed source positions, or the sum of per-position LPIs


class NonFiniteScoresError(ArithmeticError):
    """A checkpoint's scores hold NaN or infinite values."""


@dataclass(frozen=True)
class RunOptions:
    """Everything besides the checkpoint that changes a record."""

    examples: int  # how many of the evaluation examples (all: 906)
    bootstrap: int = 1000
    rank_by: str = "abs"  # ablation ranking, one of RANKINGS
    target: str = "answer"  # the attributed token, one of TARGETS
    st_rank: str = "abs-mean"  # the S_t reading, one of ST_RANKS
    attn_positions: str = "sum"  # the attention-neuron reading, one of ATTN_POSITIONS
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 64  # prompts per forward pass, in length order (capture.last_position_logits)
    mode: str = "exact"  # "exact" Gated-LPI, or its "first-order" approximation (lpi_core.modes)

    def __post_init__(self) -> None:
        if self.rank_by not in RANKINGS:
            raise ValueError(f"rank_by must be one of {', '.join(RANKINGS)}, not {self.rank_by!r}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {self.target!r}")
        if self.st_rank not in ST_RANKS:
            raise ValueError(f"st_rank must be one of {', '.join(ST_RANKS)}, not {self.st_rank!r}")
        if self.attn_positions not in ATTN_POSITIONS:
            raise ValueError(f"attn_positions must be one of {', '.join(ATTN_POSITIONS)}, not {self.attn_positions!r}")

    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)


@dataclass
class Data:
    prompts: list[str]
    answers: list[str]

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps([self.prompts, self.answers]).encode()).hexdigest()


def check_finite(att: Attribution, lm: LanguageModel, where: str) -> None:
    """Raise NonFiniteScoresError, naming the layers and the cause, if any score is NaN or infinite."""
    bad: dict[str, list[str]] = {}  # layers -> the kinds of scores that are non-finite there
    for name in ("ffn", "shared_ffn", "attn", "heads", "ffn_layer", "attn_layer"):
        scores = getattr(att, name)
        if scores is not None:
            finite = torch.isfinite(scores).reshape(scores.shape[0], scores.shape[1], -1).all(-1).all(0)  # [layers]
            if not finite.all():
                bad.setdefault(str((~finite).nonzero().flatten().tolist()), []).append(name)
    if not bad:
        return
    weights = [name for name, p in lm.model.named_parameters() if not torch.isfinite(p).all()]
    if weights:
        cause = f"the checkpoint's weights hold non-finite values ({', '.join(weights[:3])}): re-download or re-save it"
    else:
        cause = f"its weights are finite, so its {lm.dtype} activations overflowed"
        cause += "" if lm.dtype == torch.float32 else ": run it in float32"
    detail = "; ".join(f"{', '.join(names)} in layers {layers}" for layers, names in bad.items())
    raise NonFiniteScoresError(f"{where}: non-finite Gated-LPI scores ({detail}); {cause}")


def unit_scores(
    name: str, per_example: torch.Tensor, counts: torch.Tensor, splits: torch.Tensor
) -> dict[str, torch.Tensor]:
    """`name`: the mean over the examples of [n, layers, units]; `boot_<name>`: over each resample;
    `split_<name>`: over each split's half A (all summed exactly, see resampled_means)."""
    return {
        name: resampled_means(per_example, torch.ones(1, per_example.shape[0]))[0],
        f"boot_{name}": resampled_means(per_example, counts),
        f"split_{name}": resampled_means(per_example, splits),
    }


def compute_record(checkpoint: Checkpoint, data: Data, options: RunOptions, progress: Progress = False) -> dict:
    """Attribute one checkpoint and run its ablations; a dict of tensors and metadata (`progress`:
    the attribution's bars, lpi_core.bars)."""
    started = time.time()
    lm = checkpoint.load(device=options.device, dtype=options.torch_dtype())
    loaded = time.time()
    where = f"{checkpoint.source}@{checkpoint.revision or checkpoint.step}"
    answer_ids = target_token_ids(lm.tokenizer, data.answers)
    attributed_ids = answer_ids if options.target == "answer" else None  # None: the model's top-1
    att = attribute(
        lm,
        data.prompts,
        target_ids=attributed_ids,
        reduce="none",
        batch_size=options.batch_size,
        progress=progress,
        mode=options.mode,
        attn_positions=options.attn_positions,
    )
    check_finite(att, lm, where)
    attributed = time.time()
    n = len(data.prompts)
    counts = resample_weights(n, options.bootstrap)
    splits = split_half_weights(n, min(SPLITS, options.bootstrap))
    mean = att.mean()
    layers = mean.heads.shape[0]
    scores = (att.heads.abs(), att.ffn.abs()) if options.st_rank == "mean-abs" else (att.heads, att.ffn)
    answers = torch.as_tensor(answer_ids)
    ranks = ablation_ranks(
        lm, data.prompts, answers, scores, splits[0].bool(), options.rank_by, checkpoint.step, options.batch_size
    )
    if options.target == "answer":  # the answer's rank unmasked: the attribution's own forward pass ranked it
        ranks["base"] = att.target_rank
    else:
        ranks["base"] = target_ranks(lm, data.prompts, answers, batch_size=options.batch_size)
    ffn, attn = att.ffn.reshape(n, layers, -1), att.attn.reshape(n, layers, -1)
    units = {**unit_scores("ffn", ffn, counts, splits), **unit_scores("attn", attn, counts, splits)}
    if options.st_rank == "mean-abs":
        units |= {
            **unit_scores("st_ffn", ffn.abs(), counts, splits),
            **unit_scores("st_attn", attn.abs(), counts, splits),
        }
    return {
        **units,
        "heads": mean.heads,
        "ffn_layer": mean.ffn_layer,
        "attn_layer": mean.attn_layer,
        "boot_ffn_layer": resampled_means(att.ffn_layer, counts),
        "boot_attn_layer": resampled_means(att.attn_layer, counts),
        "hits": {k: r < 10 for k, r in ranks.items()},
        "hits_at_1": {k: r < 1 for k, r in ranks.items()},
        "target_ids": att.target_ids,
        "meta": {
            "step": checkpoint.step,
            "source": checkpoint.source,
            "revision": checkpoint.revision,
            "commit": lm.commit,
            "family": lm.adapter.family,
            "vocab": int(lm.adapter.unembedding.shape[0]),
            "options": asdict(options),
            "data": data.digest,
            "examples": n,
            "seconds": round(time.time() - started, 1),
            "stage_seconds": {  # wall clock: loading, attribution, the rest (HIT@10 with its ablations, bootstrap)
                "load": round(loaded - started, 1),
                "attribute": round(attributed - loaded, 1),
                "rest": round(time.time() - attributed, 1),
            },
            "versions": versions(),
            "machine": numeric_environment(),
            "lpi_kernel": "fused"
            if use_fused("auto", lm.device)
            else "materialised",  # what attribute(kernel="auto") ran
            "precision": {
                "forward": options.dtype,
                "attribution": "float32",
            },  # the engine scores in float32 whatever the forward's dtype
            "format": RECORD_FORMAT,
        },
    }


def versions() -> dict[str, str]:
    return {
        "code": code_version(),
        "torch": str(torch.__version__),
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
