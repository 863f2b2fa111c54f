"""What a claims run is about: the suite's options, its two checkpoint series, its data.

Shared by the pytest plugin (conftest.py) and the `lpi-claims report` command, so that a report
built from the cache alone finds exactly the records the run wrote.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from fixtures.hub import hub_series
from fixtures.miniature.build import MiniatureRun, build_miniature, cache_root, run_directory
from fixtures.miniature.presets import PRESETS
from fixtures.series import CheckpointSeries
from lpi_core import evaluation_set
from lpi_core.modes import MODES

from .records import Data, RunOptions

FAMILIES = ("moe", "dense")


class SuiteOptionError(ValueError):
    """An option value that cannot work; raised at start-up."""


@dataclass(frozen=True)
class SuiteConfig:
    suite: str = "miniature"
    preset: str = "default"
    gpu: bool = False
    moe_model: str | None = None
    dense_model: str | None = None
    checkpoints: tuple[int, ...] = ()
    examples: int | None = None
    bootstrap: int = 100
    cache_dir: str | None = None
    report_dir: str = "reports"
    lpi_mode: str = "exact"

    def __post_init__(self) -> None:
        if self.suite not in ("miniature", "paper"):
            raise SuiteOptionError(f"--suite must be 'miniature' or 'paper', not {self.suite!r}")
        if self.preset not in PRESETS:
            raise SuiteOptionError(f"--preset {self.preset!r} is unknown; presets: {', '.join(PRESETS)}")
        if self.suite == "miniature" and (self.moe_model or self.dense_model):
            raise SuiteOptionError("--moe-model/--dense-model choose hub repositories: use them with --suite paper")
        if self.examples is not None and not 1 <= self.examples <= 906:
            raise SuiteOptionError(f"--examples must be between 1 and 906 (the evaluation set), not {self.examples}")
        if self.lpi_mode not in MODES:
            raise SuiteOptionError(f"--lpi-mode must be one of {', '.join(MODES)}, not {self.lpi_mode!r}")
        if self.bootstrap < 10:
            raise SuiteOptionError(f"--bootstrap must be at least 10 resamples, not {self.bootstrap}")
        if self.suite == "miniature" and self.checkpoints:
            unknown = sorted(set(self.checkpoints) - set(PRESETS[self.preset].checkpoints))
            if unknown:
                raise SuiteOptionError(
                    f"--checkpoints {unknown} are not in the {self.preset} preset; it has {list(PRESETS[self.preset].checkpoints)}"
                )
        if self.checkpoints and len(self.checkpoints) < 2:
            raise SuiteOptionError("--checkpoints needs at least two steps: the claims compare checkpoints")

    @property
    def cache(self) -> Path:
        return cache_root(self.cache_dir)

    def run_options(self) -> RunOptions:
        return RunOptions(
            examples=self.examples or 906,
            bootstrap=self.bootstrap,
            device="cuda" if self.gpu else "cpu",
            dtype="bfloat16" if self.gpu else "float32",
            mode=self.lpi_mode,
        )

    def data(self) -> Data:
        data = evaluation_set()
        n = self.examples or len(data)
        idx = [round(i * len(data) / n) for i in range(n)]  # evenly spread over the relations
        return Data([data["prompt"][i] for i in idx], [data["object"][i] for i in idx])

    def miniature(self, build: bool = True) -> MiniatureRun:
        if build:
            return build_miniature(self.preset, cache_dir=self.cache)
        root = run_directory(self.preset, self.cache)
        if not (root / "manifest.json").exists():
            raise FileNotFoundError(f"the {self.preset} miniature run is not built in {self.cache}; run the claims first")
        return MiniatureRun(root)

    def series(self, family: str, build: bool = True) -> CheckpointSeries:
        if self.suite == "miniature":
            series = self.miniature(build).series(family)
        else:
            repo = self.moe_model if family == "moe" else self.dense_model
            series = hub_series(family, steps=list(self.checkpoints) or None, repo=repo, cache_dir=self.cache)
        if self.checkpoints and self.suite == "miniature":
            series = series.subset(sorted(self.checkpoints))
        return series

    def as_dict(self) -> dict:
        return asdict(self)
