"""A cached series as one labelled array: `load_series(config, family)` -> xarray.Dataset with
`seed, step` before each record's unit dimensions (lpi_core/labels.py), read from the cache alone.

Variables: the dataset-level scores `ffn (seed, step, layer, expert, neuron)`, `attn (…, layer,
head, dim)`, `heads`, `ffn_layer`, `attn_layer`, and `hit_at_10`, `hit_at_1 (seed, step, ablation, example)`
(1 where the answer is in the top 10 / top 1, per masked set: base, then every ablation's in-sample,
held-out and random set, `claims.records.ablations.HIT_KEYS`).
Coordinates name each FFN block and attention projection by its module path; the attributes hold
the run's options, so the Dataset says which records it came from.
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr
from transformers import AutoConfig, AutoModelForCausalLM

from claims.fixtures.series import Announcer, Checkpoint, silent
from claims.records.ablations import HIT_KEYS
from claims.records.store import RecordStore
from claims.running.suite import SuiteConfig
from lpi_core.adapters import adapter_for
from lpi_core.labels import scores_dataset, unit_names


def _meta_model(checkpoint: Checkpoint) -> torch.nn.Module:
    """The checkpoint's architecture on the meta device (its config only: no weights are read)."""
    config = AutoConfig.from_pretrained(
        checkpoint.source,
        revision=checkpoint.revision,
        cache_dir=checkpoint.hub_cache,
        local_files_only=checkpoint.offline,
    )
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def load_series(config: SuiteConfig, family: str, announce: Announcer = silent) -> xr.Dataset:
    """Every seed's series of `family` from the cache (FileNotFoundError naming what is missing);
    `announce` shows a bar over the series read."""
    series_list = config.series(family, build=False)
    data, options = config.data(), config.run_options()
    store = RecordStore(config.cache)
    model = _meta_model(series_list[0].checkpoints[0])
    adapter = adapter_for(model)
    shapes = {"ffn": (adapter.num_experts, adapter.ffn_dim), "attn": (adapter.num_heads, adapter.head_dim)}
    seeds = []
    for series in announce.bar(series_list, desc=f"{family}: reading records", unit="series"):
        found, missing = store.load_all(series.checkpoints, data, options)
        if missing:
            raise FileNotFoundError(
                f"{series.name} seed {series.seed}: the cache {config.cache} has no records for steps "
                f"{[c.step for c in missing]}; "
                "compute them first (pytest claims or lpi-claims records)"
            )
        steps = []
        for record in found:
            scores = {name: record[name] for name in ("heads", "ffn_layer", "attn_layer")}
            scores |= {name: record[name].reshape(record[name].shape[0], *shapes[name]) for name in shapes}
            step = scores_dataset(scores, unit_names(model))
            hits = {
                k: torch.stack([record[k][name] for name in HIT_KEYS]).to(torch.int8).numpy()
                for k in ("hits", "hits_at_1")
            }
            steps.append(
                step.assign(
                    hit_at_10=(("ablation", "example"), hits["hits"]),
                    hit_at_1=(("ablation", "example"), hits["hits_at_1"]),
                )
            )
        seeds.append(xr.concat(steps, dim="step").assign_coords(step=series.steps))
    dataset = xr.concat(seeds, dim="seed").assign_coords(
        seed=[s.seed for s in series_list], ablation=list(HIT_KEYS), example=np.arange(len(data.prompts))
    )
    attributes = {
        k: v if isinstance(v, (int, float, str)) and not isinstance(v, bool) else str(v)
        for k, v in config.as_dict().items()
    }
    return dataset.assign_attrs(
        family=family,
        series=series_list[0].name,
        total_steps=series_list[0].total_steps,
        data=data.digest,
        **attributes,
    )
