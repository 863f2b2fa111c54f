"""Progress: a tqdm bar shown as lines (a refresh per interval), and what -q and -qq keep."""

import time
from types import SimpleNamespace

import pytest

from claims.fixtures.series import silent
from claims.running.progress import LineAnnouncer, StderrAnnouncer, WorkerProgress, bar_seconds, verbosity
from lpi_core.bars import progress_bar


class Collected(LineAnnouncer):
    def __init__(self, show_bars: bool = True) -> None:
        self.lines: list[str] = []
        self.show_bars = show_bars

    def __call__(self, message: str) -> None:
        self.lines.append(message)


def slow(bar, steps: int = 4, seconds: float = 0.12) -> None:
    for _ in bar(range(steps), desc="train", total=steps):
        time.sleep(seconds)


def test_a_running_bar_becomes_lines_at_most_one_per_interval(monkeypatch):
    monkeypatch.setenv("LPI_CLAIMS_PROGRESS_SECONDS", "0.1")
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    announce = Collected()
    slow(announce.bar)
    assert announce.lines, "no bar line in 0.48 s with a 0.1 s interval"
    assert len(announce.lines) <= 4  # never more than one per refresh interval (4 sleeps of 0.12 s)
    for line in announce.lines:
        assert "\r" not in line and "\x1b" not in line
        assert line.startswith("train: ") and "%|" in line  # tqdm's meter; closing the bar adds no blank line
    assert any(f"| {n}/4 " in line for line in announce.lines for n in (1, 2, 3))


def test_bars_are_hidden_when_asked_and_short_steps_show_none(monkeypatch):
    monkeypatch.setenv("LPI_CLAIMS_PROGRESS_SECONDS", "0.1")
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    hidden = Collected(show_bars=False)
    slow(hidden.bar)
    assert hidden.lines == []
    monkeypatch.setenv("LPI_CLAIMS_PROGRESS_SECONDS", "30")
    short = Collected()
    slow(short.bar, steps=2, seconds=0.01)
    assert short.lines == []  # a step shorter than the interval shows no bar at all
    assert list(silent.bar(range(3))) == [0, 1, 2]


@pytest.mark.parametrize(
    "verbose, shown", [(1, (True, True)), (0, (True, True)), (-1, (True, False)), (-2, (False, False))]
)
def test_q_keeps_the_start_and_end_lines_and_qq_shows_nothing(verbose, shown, tmp_path):
    config = SimpleNamespace(option=SimpleNamespace(verbose=verbose))
    assert verbosity(config) == shown
    worker = WorkerProgress(str(tmp_path), "gw0", config)
    worker("record moe/seed0/step15: computing (906 examples)")
    written = (tmp_path / "gw0.log").read_text() if (tmp_path / "gw0.log").exists() else ""
    assert written == ("record moe/seed0/step15: computing (906 examples)\n" if shown[0] else "")


def test_the_command_line_quiet_shows_nothing(capsys, monkeypatch):
    monkeypatch.setenv("LPI_CLAIMS_PROGRESS_SECONDS", "0.05")
    quiet, plain = StderrAnnouncer(quiet=True), StderrAnnouncer()
    quiet("a line")
    slow(quiet.bar)
    assert capsys.readouterr().err == ""
    plain("a line")
    assert capsys.readouterr().err == "a line\n"


def test_a_bad_interval_names_the_variable(monkeypatch):
    for value in ("0", "-3", "soon"):
        monkeypatch.setenv("LPI_CLAIMS_PROGRESS_SECONDS", value)
        with pytest.raises(ValueError, match="LPI_CLAIMS_PROGRESS_SECONDS must be a positive number of seconds"):
            bar_seconds()


def test_the_engine_takes_a_bar_factory():
    made = []

    def factory(iterable=None, **kwargs):
        made.append(kwargs["desc"])
        return silent.bar(iterable, **kwargs)

    assert list(progress_bar(factory, range(2), desc="forward")) == [0, 1] and made == ["forward"]
    assert progress_bar(False, total=3).disable and not progress_bar(True, total=3, file=open("/dev/null", "w")).disable
