"""The test suite's own options and markers (the claims plugin's are in claims/plugin.py)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("lpi-claims tests").addoption(
        "--full-size",
        action="store_true",
        help="run the tests on checkpoints of the paper models' full sizes (minutes; ~5 GB of disk)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "full_size: checkpoints of the paper models' full sizes; runs only with --full-size"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("full_size"):
        return
    for item in items:
        if "full_size" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="needs --full-size"))
