"""`lpi-claims export`: the cached series as files for users outside Python.

`netcdf`: one `<family>.nc` per family, the Dataset of `labelled.load_series` as it is. `parquet`:
one long table per family and variable, `<family>.<variable>.parquet`, a row per value with its
coordinates (seed, step, layer, expert, neuron, … and the module path). The directory is written
whole and then renamed into place, so an interrupted export leaves nothing half-written; an existing
directory is replaced only if an earlier export wrote it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from claims.exploring.labelled import load_series
from claims.fixtures.series import Announcer, silent
from claims.running.suite import SuiteConfig
from claims.storage.atomic import atomic_directory

FORMATS = ("netcdf", "parquet")
MARKER = ".lpi-claims-export"  # an export directory: only such a directory is replaced


def export(
    config: SuiteConfig, families: Sequence[str], out: Path, fmt: str, announce: Announcer = silent
) -> list[Path]:
    """Write the families' series to `out` in `fmt`; the paths written (`announce` shows the progress)."""
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    out = Path(out)
    if out.exists() and not (out / MARKER).exists():
        raise ValueError(
            f"--out {out} exists and was not written by lpi-claims export (it would be replaced whole): "
            "name a new directory"
        )
    datasets = {
        family: load_series(config, family, announce) for family in families
    }  # everything read before anything is written
    if fmt == "netcdf":  # (family, variable): a file per family, or per family and variable
        files = [(family, None) for family in datasets]
    else:
        files = [(family, variable) for family in datasets for variable in datasets[family].data_vars]
    announce(f"export: writing {len(files)} {fmt} files to {out}")
    names = []
    with atomic_directory(out) as directory:
        (directory / MARKER).write_text(
            "written by lpi-claims export; the next export to this directory replaces it whole\n"
        )
        for family, variable in announce.bar(files, desc=f"export {fmt}", unit="file"):
            if variable is None:
                names.append(f"{family}.nc")
                datasets[family].to_netcdf(directory / names[-1])
                continue
            names.append(f"{family}.{variable}.parquet")
            table = datasets[family][variable].to_dataframe().reset_index()
            table.attrs = {}
            table.to_parquet(directory / names[-1], index=False)
    return [Path(out) / name for name in names]
