"""What a claims run is about: its options, its checkpoint series (per family and seed), its data.

Shared by the pytest plugin (claims/plugin.py) and the `lpi-claims report` command, so that a report
built from the cache alone finds exactly the records the run wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from claims.fixtures.hub import hub_series
from claims.fixtures.local import LocalSeriesError, local_series
from claims.fixtures.miniature.build import (
    MiniatureRun,
    build_all_series,
    build_series,
    prepare_miniature,
    run_directory,
)
from claims.fixtures.miniature.presets import PRESETS
from claims.fixtures.series import Announcer, Checkpoint, CheckpointSeries, silent
from claims.records.compute import Data, RunOptions
from claims.records.scheduling import rotated
from claims.records.streaming import parse_size
from claims.running.options import OPTIONS
from claims.storage.cache import cache_root
from lpi_core import evaluation_set
from lpi_core.modes import MODES

FAMILIES = ("moe", "dense")


def attributed_steps(steps: Sequence[int], onset: int | None) -> list[int]:
    """The steps of a miniature series worth a record: those from `onset` (its paper-scale anchor,
    `scale_anchor`) on; an earlier checkpoint has no paper analogue and no claim reads it. A series
    without an anchor, or with fewer than two checkpoints from it on, keeps them all (its claims are
    not testable either way)."""
    kept = [s for s in steps if onset is None or s >= onset]
    return kept if len(kept) >= 2 else list(steps)


def scale_anchor(run: MiniatureRun, family: str, seed: int, families: Sequence[str]) -> int | None:
    """Where the paper scale of (family, seed) will start when it shares one with `families`
    (claims/statistics/windows.py): the later of their knowledge onsets for that seed once all of them are
    built; until then, or where one never reaches onset, the series' own onset, which is no later."""
    together = sorted(set(families) | {family})
    own = run.onset_step(family, seed)
    if not all(run.is_built(f, seed) for f in together):
        return own
    onsets = [run.onset_step(f, seed) for f in together]
    return own if None in onsets else max(onsets)


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
    bootstrap: int = 1000
    seeds: int | None = None  # None: the preset's
    rank_by: str = "abs"
    target: str = "answer"
    st_rank: str = "abs-mean"
    attn_positions: str = "sum"
    rho_pairs: str = "consecutive"
    dense_end: str = "end"
    margin: float = 0.05
    lpi_mode: str = "exact"
    disk_budget: str | None = None
    cache_dir: str | None = None
    report_dir: str = "reports"

    @classmethod
    def from_options(cls, raw: dict) -> SuiteConfig:
        """Parse command-line values (strings, or None where not given) by the options table."""
        values = {}
        for option in OPTIONS:
            value = raw.get(option.field)
            value = option.default if value is None else value
            if value is None or option.kind is bool:
                values[option.field] = bool(value) if option.kind is bool else value
            elif option.field == "checkpoints":
                try:
                    values["checkpoints"] = tuple(int(s) for s in str(value).split(",") if s.strip())
                except ValueError:
                    raise SuiteOptionError(f"--checkpoints must be comma-separated steps, not {value!r}") from None
            elif option.kind in (int, float):
                try:
                    values[option.field] = option.kind(value)
                except ValueError:
                    what = "an integer" if option.kind is int else "a number"
                    raise SuiteOptionError(f"--{option.name} must be {what}, not {value!r}") from None
            else:
                values[option.field] = value
            if option.choices and values[option.field] not in option.choices:
                raise SuiteOptionError(
                    f"--{option.name} must be one of {', '.join(option.choices)}, not {values[option.field]!r}"
                )
        return cls(**{f.name: values[f.name] for f in fields(cls)})

    def __post_init__(self) -> None:
        if self.suite not in ("miniature", "paper"):
            raise SuiteOptionError(f"--suite must be 'miniature' or 'paper', not {self.suite!r}")
        if self.preset not in PRESETS:
            raise SuiteOptionError(f"--preset {self.preset!r} is unknown; presets: {', '.join(PRESETS)}")
        if self.suite == "miniature" and (self.moe_model or self.dense_model):
            raise SuiteOptionError(
                "--moe-model/--dense-model choose the paper suite's series (a hub repository or a local path): "
                "use them with --suite paper"
            )
        if self.examples is not None and not 2 <= self.examples <= 906:
            raise SuiteOptionError(
                "--examples must be between 2 (the held-out ablations score one half with the other's set) "
                f"and 906 (the evaluation set), not {self.examples}"
            )
        if self.lpi_mode not in MODES:
            raise SuiteOptionError(f"--lpi-mode must be one of {', '.join(MODES)}, not {self.lpi_mode!r}")
        if not 0 <= self.margin < 1:
            raise SuiteOptionError(
                f"--margin is a fraction of a quantity's range, from 0 to below 1, not {self.margin}"
            )
        if self.bootstrap < 10:
            raise SuiteOptionError(f"--bootstrap must be at least 10 resamples, not {self.bootstrap}")
        if self.seeds is not None and (self.seeds < 1 or (self.suite == "paper" and self.seeds != 1)):
            raise SuiteOptionError(
                f"--seeds must be at least 1 (and 1 with --suite paper: the hub has one run), not {self.seeds}"
            )
        if self.suite == "miniature" and self.checkpoints:
            unknown = sorted(set(self.checkpoints) - set(PRESETS[self.preset].checkpoints))
            if unknown:
                raise SuiteOptionError(
                    f"--checkpoints {unknown} are not in the {self.preset} preset; "
                    f"it has {list(PRESETS[self.preset].checkpoints)}"
                )
        if self.disk_budget is not None:
            if self.suite != "paper":
                raise SuiteOptionError("--disk-budget streams hub revisions: use it with --suite paper")
            local = [f for f in ("moe", "dense") if self.local_model(f) is not None]
            if local:
                raise SuiteOptionError(
                    f"--disk-budget streams hub revisions and removes them; the {' and '.join(local)} model "
                    "is a local path, never removed: drop --disk-budget"
                )
            parse_size(self.disk_budget)
        if self.checkpoints and len(self.checkpoints) < 2:
            raise SuiteOptionError("--checkpoints needs at least two steps: the claims compare checkpoints")

    def local_model(self, family: str) -> Path | None:
        """The family's --moe-model/--dense-model where it names a local path (a directory or a .gguf
        file: fixtures/local.py), None where it is a hub repository or the paper's default."""
        source = self.moe_model if family == "moe" else self.dense_model
        if self.suite != "paper" or not source or not Path(source).expanduser().exists():
            return None
        return Path(source).expanduser()

    @property
    def cache(self) -> Path:
        return cache_root(self.cache_dir)

    @property
    def seed_count(self) -> int:
        if self.suite == "paper":
            return 1
        return self.seeds if self.seeds is not None else PRESETS[self.preset].seeds

    def run_options(self) -> RunOptions:
        return RunOptions(
            examples=self.examples or 906,
            bootstrap=self.bootstrap,
            rank_by=self.rank_by,
            target=self.target,
            st_rank=self.st_rank,
            attn_positions=self.attn_positions,
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
        """The miniature run, trained on the GPU under --gpu (each xdist worker's own: claims/plugin.py)."""
        device = "cuda" if self.gpu else "cpu"
        if build:
            return prepare_miniature(self.preset, cache_dir=self.cache, device=device)
        root = run_directory(self.preset, self.cache, device=device)
        if not (root / "manifest.json").exists():
            raise FileNotFoundError(
                f"the {self.preset} miniature run is not built in {self.cache}; run the claims first"
            )
        return MiniatureRun(root)

    def build_all(
        self,
        families: Sequence[str],
        rotate: int = 0,
        announce: Announcer = silent,
        meanwhile: Callable[[], bool] = lambda: False,
    ) -> None:
        """Build every seed's series of the miniature `families`, seed by seed, starting `rotate` places
        in and skipping what another worker is building, so that workers build side by side (calling
        `meanwhile()` while only others' builds are left)."""
        if self.suite != "miniature":
            return
        pairs = [(family, seed) for seed in range(self.seed_count) for family in families]
        build_all_series(
            self.miniature(True), [pairs[i] for i in rotated(len(pairs), rotate)], announce, meanwhile=meanwhile
        )

    def built_checkpoints(self, families: Sequence[str]) -> list[Checkpoint]:
        """The checkpoints the claims attribute in the miniature series of `families` already built,
        without building any (none for the paper suite): first those of series whose paper scale is
        settled (every family of their seed built), then the others' latest first (a later anchor can
        only drop their earliest)."""
        if self.suite != "miniature":
            return []
        run = self.miniature(True)
        settled, unsettled = [], []
        for family in families:
            for seed in range(self.seed_count):
                if run.is_built(family, seed):
                    checkpoints = self._attributed(run, run.series(family, seed), families).checkpoints
                    if all(run.is_built(f, seed) for f in families):
                        settled += checkpoints
                    else:
                        unsettled += reversed(checkpoints)
        return settled + unsettled

    def _attributed(self, run: MiniatureRun, series: CheckpointSeries, families: Sequence[str]) -> CheckpointSeries:
        """The miniature series at the checkpoints the claims attribute: the run's --checkpoints (all
        of them when none are chosen), from the start of the paper scale it shares with `families` on
        (`scale_anchor`, `attributed_steps`)."""
        steps = sorted(self.checkpoints) if self.checkpoints else list(series.steps)
        return series.subset(attributed_steps(steps, scale_anchor(run, series.family, series.seed, families)))

    def series(
        self,
        family: str,
        build: bool = True,
        rotate: int = 0,
        announce: Announcer = silent,
        families: Sequence[str] = FAMILIES,
    ) -> list[CheckpointSeries]:
        """The family's series, one per seed (seed order), at the checkpoints its claims read when its
        paper scale is shared with `families` (those loaded with it); `build` trains missing ones, from
        seed `rotate` on (`announce` gets their progress lines)."""
        if self.suite == "miniature":
            run = self.miniature(build)
            count = self.seed_count
            built = {
                s: build_series(run, family, s, announce) if build else run.series(family, s)
                for s in rotated(count, rotate)
            }
            return [self._attributed(run, built[s], families) for s in range(count)]
        local = self.local_model(family)
        if local is not None:
            series = local_series(local, family)
            missing = sorted(set(self.checkpoints) - set(series.steps))
            if missing:
                raise LocalSeriesError(f"{local}: no checkpoints at --checkpoints {missing}; it has {series.steps}")
            return [series.subset(list(self.checkpoints)) if self.checkpoints else series]
        repo = self.moe_model if family == "moe" else self.dense_model
        return [hub_series(family, steps=list(self.checkpoints) or None, repo=repo, cache_dir=self.cache)]

    def as_dict(self) -> dict:
        return {**asdict(self), "seeds": self.seed_count}
