"""`lpi-claims --help` and every sub-command's help print and exit 0 (a bare % in a help text breaks argparse)."""

from __future__ import annotations

import pytest

from claims.cli import main

SUBCOMMANDS = ("report", "records", "export", "units", "merge")


@pytest.mark.parametrize("argv", [["--help"], *([name, "--help"] for name in SUBCOMMANDS)], ids=" ".join)
def test_help_prints_and_exits_zero(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    assert shown.startswith("usage: lpi-claims")
    if argv[0] == "--help":
        assert all(name in shown for name in SUBCOMMANDS) and "top-1% entry" in shown
