"""`lpi-claims`: `records` computes a suite's records through an executor (this machine, Slurm, in
process), `merge` brings other caches' records into one, `report` rebuilds the report from the
cache alone, `export` writes the cached series as netCDF or Parquet, `units` drills into the top
units. They take the claims' options (options.py), so they find the records `pytest claims`
would."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from claims.exploring.export import FORMATS, export
from claims.exploring.units import KINDS, drill_down, units_table
from claims.records.merge import RecordConflictError, merge_caches
from claims.reporting.report import build_report
from claims.reporting.table import table
from claims.running.executors import (
    EXECUTORS,
    SlurmOptions,
    make_executor,
    parse_shard,
    record_tasks,
    shard,
    submit,
    wait,
)
from claims.running.measurements import SERIES_ERRORS, load_family
from claims.running.options import OPTIONS
from claims.running.progress import StderrAnnouncer
from claims.running.suite import FAMILIES, SuiteConfig
from claims.storage.atomic import atomic_write_json


def _add_claims_options(command: argparse.ArgumentParser, meaning: str) -> None:
    for option in OPTIONS:
        if option.kind is bool:
            command.add_argument(f"--{option.name}", action="store_true", help=f"{meaning}{option.help}")
        else:
            command.add_argument(f"--{option.name}", default=None, help=option.help)
    command.add_argument("--family", choices=FAMILIES, action="append", help="only this family (repeatable)")
    command.add_argument("--debug", action="store_true", help="show the traceback of an expected failure too")
    command.add_argument("-q", "--quiet", action="store_true", help="no progress lines or bars")


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="lpi-claims", description="Compute, merge and report the claims' records.")
    sub = main.add_subparsers(dest="command", required=True)
    report = sub.add_parser("report", help="evaluate every claim from cached records and write the report")
    _add_claims_options(report, "the records were computed with this: ")
    records = sub.add_parser("records", help="compute the records of every checkpoint through an executor")
    _add_claims_options(records, "")
    records.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local (this machine), slurm (submitit) or debug (in process)",
    )
    records.add_argument("--workers", type=int, default=2, help="--executor local: worker processes")
    records.add_argument(
        "--shard", default=None, help="i/N: only the i-th of N deterministic slices of the checkpoints"
    )
    records.add_argument("--log-dir", default="lpi-claims-jobs", help="submitit's job scripts, pickles and logs")
    records.add_argument("--slurm-partition", default=None)
    records.add_argument("--gpus-per-task", type=int, default=0)
    records.add_argument("--array-parallelism", type=int, default=64, help="Slurm array tasks running at once")
    records.add_argument(
        "--time-limit",
        type=int,
        default=240,
        help="Slurm time limit per task, minutes (a task that reaches it is requeued)",
    )
    records.add_argument(
        "--slurm-extra",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another #SBATCH line, e.g. account=abc (repeatable)",
    )
    export = sub.add_parser(
        "export", help="write the cached series as netCDF or Parquet files (labelled by module path)"
    )
    _add_claims_options(export, "the records were computed with this: ")
    export.add_argument("--format", choices=FORMATS, default="netcdf")
    export.add_argument("--out", default="exports", help="the directory to write (replaced whole)")
    units = sub.add_parser(
        "units", help="the top units of the last checkpoint: trajectories, top-1%% entry, routing, top prompts"
    )
    _add_claims_options(units, "the records were computed with this: ")
    units.add_argument("--kind", choices=KINDS, default="ffn", help="FFN neurons or attention neurons")
    units.add_argument("--top", type=int, default=20, help="how many units")
    units.add_argument("--examples-per-unit", type=int, default=5, help="the prompts each unit helps most")
    merge = sub.add_parser(
        "merge", help="copy the records of other caches into --cache-dir (conflicting records are an error)"
    )
    merge.add_argument("sources", nargs="+", help="cache directories to merge from")
    merge.add_argument("--cache-dir", required=True, help="the cache to merge into")
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "merge":
            return _merge(args)
        config = SuiteConfig.from_options(vars(args))
        if args.command == "units":
            return _units(config, args)
        if args.command == "export":
            written = export(config, args.family or FAMILIES, Path(args.out), args.format, StderrAnnouncer(args.quiet))
            print("\n".join(f"wrote {path}" for path in written))
            return 0
        return _records(config, args) if args.command == "records" else _report(config, args)
    except (ValueError, *SERIES_ERRORS) as err:
        if getattr(args, "debug", False):
            raise
        print(f"lpi-claims {args.command}: {err}", file=sys.stderr)
        return 2


def _report(config: SuiteConfig, args: argparse.Namespace) -> int:
    measured, info = {}, {}
    families = args.family or FAMILIES
    for family in families:
        measured[family], info[family] = load_family(config, family, compute=False, families=families)
    results, out = build_report(config, measured, info)
    print(table(results, config.lpi_mode))
    print(f"\nreport written to {out}/ (claims.md, claims.json, figures)")
    return 0


MIN_SLURM_MINUTES = 3  # the requeue signal comes at least 30 s after a task starts (see _records)


def _records(config: SuiteConfig, args: argparse.Namespace) -> int:
    extra = {}
    for item in args.slurm_extra:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--slurm-extra takes KEY=VALUE (an #SBATCH option without its dashes), not {item!r}")
        extra[key] = value
    if args.executor == "slurm" and args.time_limit < MIN_SLURM_MINUTES:
        raise ValueError(
            f"--time-limit {args.time_limit}: a Slurm task needs at least {MIN_SLURM_MINUTES} minutes. "
            "submitit asks for its requeue signal 90 s before the limit and Slurm may send it up to 60 s early, "
            "so a shorter task can get it while Python is still starting, before the handler is in place, "
            "and dies of it instead of requeuing"
        )
    tasks = record_tasks(config, args.family or FAMILIES, announce=StderrAnnouncer(args.quiet))
    if args.shard:
        tasks = shard(tasks, *parse_shard(args.shard))
    slurm = SlurmOptions(args.slurm_partition, args.gpus_per_task, args.array_parallelism, args.time_limit, extra)
    executor = make_executor(args.executor, Path(args.log_dir), slurm, gpu=config.gpu)
    if not args.quiet:
        print(
            f"lpi-claims records: {len(tasks)} checkpoints through the {args.executor} executor; cache {config.cache}",
            file=sys.stderr,
        )
    failed = wait(
        submit(executor, args.executor, config, tasks, args.workers, args.quiet), out=None if args.quiet else sys.stderr
    )
    for name, error in failed.items():
        print(f"FAILED {name}: {error}", file=sys.stderr)
    return 1 if failed else 0


def _units(config: SuiteConfig, args: argparse.Namespace) -> int:
    announce = StderrAnnouncer(args.quiet)
    for family in args.family or ["moe"]:
        found = drill_down(config, family, args.kind, args.top, args.examples_per_unit, announce)
        path = atomic_write_json(Path(config.report_dir) / f"units-{family}-{args.kind}.json", found)
        print(units_table(found))
        print(f"\n{family}: written to {path}")
    return 0


def _merge(args: argparse.Namespace) -> int:
    try:
        result = merge_caches([Path(s) for s in args.sources], Path(args.cache_dir))
    except (RecordConflictError, FileNotFoundError) as err:
        print(f"lpi-claims merge: {err}", file=sys.stderr)
        return 2
    print(f"lpi-claims merge: {result.copied} records copied, {result.identical} already there")
    return 0
