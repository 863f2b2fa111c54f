"""`lpi-claims report`: the report rebuilt from the cache alone (after runs on one or several machines)."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .loading import SERIES_ERRORS, load_family
from .options import OPTIONS
from .report import build_report
from .suite import FAMILIES, SuiteConfig
from .table import table


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="lpi-claims", description="Build the claims report from the cache alone.")
    sub = main.add_subparsers(dest="command", required=True)
    report = sub.add_parser("report", help="evaluate every claim from cached records and write the report")
    for option in OPTIONS:
        if option.kind is bool:
            report.add_argument(f"--{option.name}", action="store_true", help=f"the records were computed with this: {option.help}")
        else:
            report.add_argument(f"--{option.name}", default=None, help=option.help)
    report.add_argument("--family", choices=FAMILIES, action="append", help="only this family (repeatable)")
    report.add_argument("--debug", action="store_true", help="show the traceback of an expected failure too")
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        config = SuiteConfig.from_options(vars(args))
        measured, info = {}, {}
        for family in args.family or FAMILIES:
            measured[family], info[family] = load_family(config, family, compute=False)
    except (ValueError, *SERIES_ERRORS) as err:
        if args.debug:
            raise
        print(f"lpi-claims report: {err}", file=sys.stderr)
        return 2
    results, out = build_report(config, measured, info)
    print(table(results, config.lpi_mode))
    print(f"\nreport written to {out}/ (claims.md, claims.json, figures)")
    return 0
