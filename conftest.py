"""The lpi-claims pytest plugin: options, markers and hooks in one place.

    pytest claims                       # the miniature replication (embedded default), on CPU
    pytest claims -k moe --gpu -n 2     # the MoE claims, on GPUs, two workers
    pytest claims --suite paper --gpu   # the paper's checkpoints from the hub
"""
from __future__ import annotations

import os

import pytest

from claims.evaluate import NOT_MEASURED
from claims.suite import SuiteConfig, SuiteOptionError

SUITE = pytest.StashKey[SuiteConfig]()
pytest_plugins = ["pytester"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lpi-claims", "paper claims replication")
    group.addoption("--gpu", action="store_true", help="run attribution on CUDA in bfloat16 (default: CPU, float32)")
    group.addoption("--suite", default="miniature", help="miniature (embedded default) or paper (hub checkpoints)")
    group.addoption("--preset", default="default", help="miniature preset: smoke, default or large")
    group.addoption("--moe-model", help="--suite paper: the MoE hub repository (default allenai/OLMoE-1B-7B-0924)")
    group.addoption("--dense-model", help="--suite paper: the dense hub repository (default allenai/OLMo-7B-0424-hf)")
    group.addoption("--checkpoints", default="", help="comma-separated training steps: a subset of the series")
    group.addoption("--examples", default=None, help="use N of the 906 evaluation examples (a quick look)")
    group.addoption("--bootstrap", default="100", help="bootstrap resamples for the 95%% intervals")
    group.addoption(
        "--lpi-mode", default="exact", help="exact Gated-LPI (the paper's score) or first-order (a faster approximation)"
    )
    group.addoption("--cache-dir", help="cache for checkpoints and records (default $LPI_CLAIMS_CACHE or ~/.cache/lpi-claims)")
    group.addoption("--report-dir", default="reports", help="where claims.md, claims.json and the figures go")


def _integer(config: pytest.Config, name: str) -> int | None:
    value = config.getoption(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise pytest.UsageError(f"--{name} must be an integer, not {value!r}") from None


def suite_from_options(config: pytest.Config) -> SuiteConfig:
    try:
        steps = tuple(int(s) for s in config.getoption("checkpoints").split(",") if s.strip())
    except ValueError:
        raise pytest.UsageError(f"--checkpoints must be comma-separated steps, not {config.getoption('checkpoints')!r}") from None
    try:
        return SuiteConfig(
            suite=config.getoption("suite"),
            preset=config.getoption("preset"),
            gpu=config.getoption("gpu"),
            moe_model=config.getoption("moe_model"),
            dense_model=config.getoption("dense_model"),
            checkpoints=steps,
            examples=_integer(config, "examples"),
            bootstrap=_integer(config, "bootstrap"),
            cache_dir=config.getoption("cache_dir"),
            report_dir=config.getoption("report_dir"),
            lpi_mode=config.getoption("lpi_mode"),
        )
    except SuiteOptionError as err:
        raise pytest.UsageError(str(err)) from None


def _pin_worker_resources(suite: SuiteConfig) -> None:
    """One GPU per xdist worker, or its share of the CPU threads (before torch initialises CUDA)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        return
    index, count = int(worker[2:]), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if suite.gpu:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        import torch

        devices = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
        if devices:
            os.environ["CUDA_VISIBLE_DEVICES"] = devices[index % len(devices)]
    else:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // count))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "claim(id): a paper claim; the test passes when the claim replicates")
    config.addinivalue_line("markers", "gpu: needs CUDA; runs only with --gpu")
    suite = suite_from_options(config)
    config.stash[SUITE] = suite
    if suite.gpu:
        import torch

        if not torch.cuda.is_available():
            raise pytest.UsageError("--gpu was given but torch sees no CUDA device; drop --gpu to run on the CPU")
    _pin_worker_resources(suite)
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(ClaimsReporter(config), "lpi-claims-reporter")


def pytest_report_header(config: pytest.Config) -> list[str]:
    import torch
    import transformers

    cuda = torch.version.cuda if torch.cuda.is_available() else "no CUDA device"
    suite = config.stash[SUITE]
    return [
        f"lpi-claims: torch {torch.__version__}, transformers {transformers.__version__}, CUDA {cuda}",
        f"lpi-claims: suite={suite.suite} preset={suite.preset} gpu={suite.gpu} examples={suite.examples or 906} "
        f"scores={suite.lpi_mode}",
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("gpu"):
        return
    skip = pytest.mark.skip(reason="needs --gpu")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


class ClaimsReporter:
    """On the controlling process: a line per claim as it finishes, then the report from the cache."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.claims: dict[str, dict] = {}
        self.not_measured: dict[str, str] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        if report.when != "call" or "claim" not in props:
            return
        test_id = f"{props['claim']}[{props['family']}]"
        if props["verdict"] == NOT_MEASURED:
            self.not_measured[test_id] = props["measured"]
        else:
            self.claims[test_id] = props
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            if reporter._tw.width_of_current_line:  # after -q progress characters
                reporter._tw.line()
            reporter.write_line(f"claim {test_id}: {props['verdict']}: {props['measured']}")

    def pytest_terminal_summary(self, terminalreporter, exitstatus: int, config: pytest.Config) -> None:
        if not self.claims and not self.not_measured:
            return
        from claims.report import build_report, series_measurements, table

        suite = config.stash[SUITE]
        families = sorted({p["family"] for p in self.claims.values()})
        measured, info = {}, {}
        for family in families:
            measured[family], info[family] = series_measurements(suite, family, compute=False)
        results, out = build_report(suite, measured, info, claim_ids=set(self.claims), not_measured=self.not_measured)
        terminalreporter.section("lpi-claims: claims vs measured")
        terminalreporter.write_line(table(results, suite.lpi_mode))
        for test_id, reason in self.not_measured.items():
            terminalreporter.write_line(f"{test_id}: {NOT_MEASURED}: {reason}")
        terminalreporter.write_line(f"report: {out}/claims.md, {out}/claims.json, figures in {out}/")
