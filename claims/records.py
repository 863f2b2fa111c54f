"""One checkpoint's measurements, computed once and cached: the input of every claim.

A record holds, for the run's examples: the dataset-level Gated-LPI of every unit (FFN neurons,
attention neurons, heads, layers), the same over `bootstrap` resamples of the examples, and
HIT@10 per example with and without the ablations (top-1 head, top-10 heads, top-1% FFN neurons).
Records are keyed by model, revision, data, options and code version, written atomically, and
computed by exactly one process: a worker skips a checkpoint that another holds the lock for and
comes back to it, so `-n N` workers spread over a series.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import datasets
import numpy as np
import torch
import transformers

import lpi_core
from fixtures.series import Checkpoint
from lpi_core import Attribution, LanguageModel, attribute, hits_at_k
from lpi_core.atomic import TMP_PREFIX, atomic_write_bytes
from lpi_core.locks import Timeout, exclusive
from lpi_core.metrics import resample_weights, resampled_means

RECORD_FORMAT = 1
ABLATIONS = ("top1-head", "top10-heads", "top1pct-ffn")


class NonFiniteScoresError(ArithmeticError):
    """A checkpoint's scores hold NaN or infinite values."""


@dataclass(frozen=True)
class RunOptions:
    """Everything besides the checkpoint that changes a record."""

    examples: int  # how many of the evaluation examples (all: 906)
    bootstrap: int = 100
    rank_by: str = "positive"  # ablation ranking: "positive" (largest I first) or "absolute" (largest |I|)
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 32
    mode: str = "exact"  # "exact" Gated-LPI, or its "first-order" approximation (lpi_core.modes)

    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)


@dataclass
class Data:
    prompts: list[str]
    answers: list[str]

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps([self.prompts, self.answers]).encode()).hexdigest()


@functools.cache
def code_version() -> str:
    """lpi_core's version and a digest of the code a record depends on: lpi_core and this module."""
    package = Path(lpi_core.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")) + [Path(__file__)]:
        digest.update(path.name.encode() + path.read_bytes())
    return f"{lpi_core.__version__}+{digest.hexdigest()[:12]}"


def record_key(checkpoint: Checkpoint, data: Data, options: RunOptions) -> str:
    identity = {
        "step": checkpoint.step,
        "source": checkpoint.source,
        "revision": checkpoint.revision,
        "data": data.digest,
        "options": asdict(options),
        "code": code_version(),
        "format": RECORD_FORMAT,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def _ranked(scores: torch.Tensor, rank_by: str) -> torch.Tensor:
    return (scores.abs() if rank_by == "absolute" else scores).reshape(-1).argsort(descending=True)


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


def compute_record(checkpoint: Checkpoint, data: Data, options: RunOptions, progress: bool = True) -> dict:
    """Attribute one checkpoint and run its ablations; a dict of tensors and metadata."""
    started = time.time()
    lm = checkpoint.load(device=options.device, dtype=options.torch_dtype())
    where = f"{checkpoint.source}@{checkpoint.revision or checkpoint.step}"
    att = attribute(lm, data.prompts, targets=data.answers, reduce="none", batch_size=options.batch_size, progress=progress, mode=options.mode)
    check_finite(att, lm, where)
    n = len(data.prompts)
    counts = resample_weights(n, options.bootstrap)
    mean = att.mean()
    layers, heads = mean.heads.shape
    head_order = _ranked(mean.heads, options.rank_by)
    ffn_order = _ranked(mean.ffn, options.rank_by)
    experts, ffn_dim = mean.ffn.shape[1:]
    top_ffn = ffn_order[: max(1, round(0.01 * ffn_order.numel()))]
    masks = {
        "top1-head": dict(mask_heads=[divmod(int(i), heads) for i in head_order[:1]]),
        "top10-heads": dict(mask_heads=[divmod(int(i), heads) for i in head_order[:10]]),
        "top1pct-ffn": dict(
            mask_ffn=[(int(i) // (experts * ffn_dim), int(i) // ffn_dim % experts, int(i) % ffn_dim) for i in top_ffn]
        ),
    }
    hits = {"base": hits_at_k(lm, data.prompts, att.target_ids, batch_size=options.batch_size)}
    for name, mask in masks.items():
        hits[name] = hits_at_k(lm, data.prompts, att.target_ids, batch_size=options.batch_size, **mask)
    return {
        "ffn": mean.ffn.reshape(layers, -1),
        "attn": mean.attn.reshape(layers, -1),
        "heads": mean.heads,
        "ffn_layer": mean.ffn_layer,
        "attn_layer": mean.attn_layer,
        "boot_ffn": resampled_means(att.ffn.reshape(n, layers, -1), counts),
        "boot_attn": resampled_means(att.attn.reshape(n, layers, -1), counts),
        "boot_ffn_layer": resampled_means(att.ffn_layer, counts),
        "boot_attn_layer": resampled_means(att.attn_layer, counts),
        "hits": {k: v.to(torch.bool) for k, v in hits.items()},
        "target_ids": att.target_ids,
        "meta": {
            "step": checkpoint.step,
            "source": checkpoint.source,
            "revision": checkpoint.revision,
            "commit": lm.commit,
            "family": lm.adapter.family,
            "options": asdict(options),
            "data": data.digest,
            "examples": n,
            "seconds": round(time.time() - started, 1),
            "versions": versions(),
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


class RecordStore:
    """Records in `<cache>/records/<key>.pt`, one lock file per key."""

    def __init__(self, cache_dir: Path) -> None:
        self.directory = Path(cache_dir) / "records"
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.pt"

    def load(self, key: str) -> dict | None:
        path = self.path(key)
        if not path.exists():
            return None
        try:
            record = torch.load(path, weights_only=True)
        except Exception:  # unreadable: written by an incompatible version, or damaged; recompute
            return None
        if not isinstance(record, dict) or record.get("meta", {}).get("format") != RECORD_FORMAT:
            return None  # written by an incompatible version: recompute
        return record

    def save(self, key: str, record: dict) -> None:
        """Write the record atomically, and log its checksum and writer in `computed.log`."""
        buffer = io.BytesIO()
        torch.save(record, buffer)
        data = buffer.getvalue()
        atomic_write_bytes(self.path(key), data)
        log = self.directory / "computed.log"
        with exclusive(str(log) + ".lock"), open(log, "a") as f:
            f.write(f"{key}\t{hashlib.sha256(data).hexdigest()}\t{os.environ.get('PYTEST_XDIST_WORKER', 'main')}\t{os.getpid()}\n")

    def computed_log(self) -> list[tuple[str, str, str]]:
        """(key, sha256, worker) of every record written to this store, oldest first."""
        log = self.directory / "computed.log"
        if not log.exists():
            return []
        return [tuple(line.split("\t")[:3]) for line in log.read_text().splitlines() if line]

    def ensure(
        self,
        checkpoints: Sequence[Checkpoint],
        data: Data,
        options: RunOptions,
        compute: Callable[[Checkpoint, Data, RunOptions], dict] = compute_record,
        rotate: int = 0,
        poll_seconds: float = 0.5,
    ) -> dict[int, dict]:
        """Every checkpoint's record, computing the missing ones; `rotate` staggers workers' order."""
        pending = list(checkpoints)
        if pending:
            shift = rotate % len(pending)
            pending = pending[shift:] + pending[:shift]
        records: dict[int, dict] = {}
        while pending:
            progressed = False
            for checkpoint in list(pending):
                key = record_key(checkpoint, data, options)
                record = self.load(key)
                if record is None:
                    try:
                        with exclusive(str(self.path(key)) + ".lock", timeout=0):
                            record = self.load(key)
                            if record is None:
                                for leftover in self.directory.glob(f"{TMP_PREFIX}{key}.pt-*"):
                                    leftover.unlink()  # an interrupted write of this record
                                record = compute(checkpoint, data, options)
                                self.save(key, record)
                    except Timeout:
                        continue  # another worker computes it; come back later
                records[checkpoint.step] = record
                pending.remove(checkpoint)
                progressed = True
            if pending and not progressed:
                time.sleep(poll_seconds)
        return {c.step: records[c.step] for c in checkpoints}


def worker_index() -> int:
    """0 for the controller or gw0, 1 for gw1, …"""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker[2:]) if worker.startswith("gw") else 0
