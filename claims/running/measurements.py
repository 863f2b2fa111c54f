"""Measurements of the families' series from the record store (computing missing records, or from the cache alone)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from claims.fixtures.hub import RevisionError
from claims.fixtures.series import Announcer, Checkpoint, silent
from claims.records.compute import NonFiniteScoresError
from claims.records.measurement_store import measurement_key, record_identity, stored_or_measured
from claims.records.scheduling import rotated
from claims.records.store import CacheWriteError, RecordStore
from claims.records.streaming import DiskBudgetError, HubStream, parse_size, stream_records
from claims.running.suite import FAMILIES, SuiteConfig
from claims.statistics.measure import SeriesMeasurements, measure_series
from claims.statistics.windows import DENSE_PAPER_END, PaperScale, paper_scale, run_fraction_scale, shared_scales
from lpi_core.adapters import UnsupportedArchitectureError
from lpi_core.data import RelationFileError
from lpi_core.loading import CheckpointError

# what makes a family's series unmeasurable, each with a message that names the problem and the fix:
# the claims that read it are "not measured" with that message, the other family's claims still run
SERIES_ERRORS = (
    RevisionError,
    CheckpointError,
    UnsupportedArchitectureError,
    RelationFileError,
    NonFiniteScoresError,
    CacheWriteError,
    FileNotFoundError,
    DiskBudgetError,
)


def ensure_records(
    config: SuiteConfig,
    checkpoints: Sequence[Checkpoint],
    rotate: int = 0,
    announce: Announcer = silent,
    share: int = 1,
) -> None:
    """Compute the checkpoints' missing records into the cache, from the `rotate`-th on; with
    --disk-budget, worker `rotate` of `share` streams every `share`-th checkpoint from the `rotate`-th
    within 1/`share` of the budget (a checkpoint another worker stored meanwhile is skipped)."""
    store, data, options = RecordStore(config.cache), config.data(), config.run_options()
    if config.disk_budget is None:
        store.ensure_all(checkpoints, data, options, rotate=rotate, keep=False, announce=announce)
        return
    mine = list(checkpoints[rotate % share :: share])  # disjoint slices: a worker never waits on another's download
    hub_cache = checkpoints[0].hub_cache if checkpoints else None
    stream = HubStream(
        parse_size(config.disk_budget) // share, hub_cache=hub_cache, ledger=config.cache / "streamed-revisions.json"
    )
    stream_records(
        mine,
        stream,
        has_record=lambda c: store.has(c, data, options),
        compute=lambda c: store.ensure_all([c], data, options, keep=False, announce=announce),
        announce=announce,
    )


def compute_one_built_record(config: SuiteConfig, families: Sequence[str], announce: Announcer = silent) -> bool:
    """Compute one missing record of a series already built (what a worker does while another
    worker's builds are all that is left); False, at once, if there is none to take."""
    checkpoints = config.built_checkpoints(families)
    return RecordStore(config.cache).compute_one_missing(
        checkpoints, config.data(), config.run_options(), announce=announce
    )


def load_family(
    config: SuiteConfig,
    family: str,
    compute: bool,
    rotate: int = 0,
    announce: Announcer = silent,
    families: Sequence[str] = FAMILIES,
) -> tuple[list[SeriesMeasurements], dict]:
    """One family's measurements, one per seed, and what the report says about its series
    (`announce` gets a line as each series is built and each record computed), at the checkpoints
    its claims read when it shares the paper scale with `families` (those measured with it).

    `compute=False` reads the cache alone and raises FileNotFoundError naming what is missing."""
    series_list = config.series(family, build=compute, rotate=rotate, announce=announce, families=families)
    data, options = config.data(), config.run_options()
    store = RecordStore(config.cache)
    if compute:
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        ensure_records(
            config, [c for s in series_list for c in s.checkpoints], rotate=rotate, announce=announce, share=workers
        )
    measured, described = [None] * len(series_list), [None] * len(series_list)
    for i in rotated(len(series_list), rotate):  # one series' records in memory at a time; workers start apart
        series = series_list[i]
        found, missing = store.load_all(series.checkpoints, data, options)
        if missing:
            steps = [c.step for c in missing]
            raise FileNotFoundError(
                f"{series.name} seed {series.seed}: the cache {config.cache} has no records for steps {steps}; "
                "run the claims on them first"
            )
        records = dict(zip(series.steps, found))
        keys = [store.key(c, data, options) for c in series.checkpoints]
        key = measurement_key(
            [record_identity(k, store.path(k)) for k in keys],
            family,
            series.name,
            series.seed,
            series.total_steps,
            series.onset,
        )
        measured[i] = stored_or_measured(
            config.cache,
            key,
            lambda: measure_series(family, series.name, series.seed, series.total_steps, records, series.onset),
        )
        described[i] = {
            "seed": series.seed,
            "checkpoints": [
                {
                    "step": s,
                    "revision": r["meta"]["revision"],
                    "commit": r["meta"]["commit"],
                    "seconds": r["meta"]["seconds"],
                }
                for s, r in sorted(records.items())
            ],
        }
    info = {"name": series_list[0].name, "total_steps": series_list[0].total_steps, "series": described}
    return measured, info


def scales_for(config: SuiteConfig, measured: dict[str, list[SeriesMeasurements]]) -> dict[tuple[str, int], PaperScale]:
    """The paper scale of every (family, seed): the paper's own steps, or the miniature mapping shared
    by the families."""
    if config.suite == "paper":
        return {
            (f, m.seed): paper_scale(m.steps)
            if config.local_model(f) is None
            else run_fraction_scale(m.steps, m.total_steps)
            for f, series in measured.items()
            for m in series
        }
    return shared_scales(
        onsets={f: {m.seed: m.onset for m in series} for f, series in measured.items()},
        steps={f: {m.seed: m.steps for m in series} for f, series in measured.items()},
        ends={f: series[0].total_steps for f, series in measured.items()},
        paper_ends={"dense": DENSE_PAPER_END} if config.dense_end == "600k" else None,
    )
