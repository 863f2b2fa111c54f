"""What a claims run shows while it works, past pytest's output capture: a line when each long
step starts and ends (a miniature series trained, a record computed), and, while it runs, its tqdm
bar as a line every LPI_CLAIMS_PROGRESS_SECONDS (default 30) seconds, so a log holds it as well as a
terminal. `-q` keeps the start and end lines only; `-qq` shows nothing.

On the controlling process a line goes to the terminal at once. An xdist worker appends its lines
to a file in a directory the controller gives it; the controller follows those files from a
thread and prints each line with the worker's name, so work done on workers shows as it happens.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterable
from contextlib import nullcontext
from pathlib import Path

import pytest
from tqdm.auto import tqdm

from claims.fixtures.series import Announcer, silent

WORKER_INPUT = "lpi_claims_progress"  # the key of the progress directory in an xdist worker's input
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def bar_seconds() -> float:
    """Seconds between two lines of a running bar (LPI_CLAIMS_PROGRESS_SECONDS, default 30)."""
    value = os.environ.get("LPI_CLAIMS_PROGRESS_SECONDS", "30")
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise ValueError(f"LPI_CLAIMS_PROGRESS_SECONDS must be a positive number of seconds, got {value!r}")
    return seconds


class BarLines:
    """A file for tqdm that turns each refresh of its bar into one line (no carriage returns)."""

    encoding = "utf-8"

    def __init__(self, announce: Announcer) -> None:
        self.announce = announce
        self.last = ""

    def write(self, text: str) -> None:
        line = ANSI.sub("", text.rsplit("\r", 1)[-1]).strip()
        if line and line != self.last:  # closing a bar writes an empty line: nothing to show
            self.last = line
            self.announce(line)

    def flush(self) -> None:
        """Lines are shown as they are written."""


class LineAnnouncer(Announcer):
    """An announcer that shows its bars as lines: one per refresh, at most every bar_seconds()."""

    show_bars = True

    def bar(self, iterable: Iterable | None = None, **kwargs) -> tqdm:
        seconds = bar_seconds()
        kwargs |= dict(file=BarLines(self), mininterval=seconds, delay=seconds, leave=False)
        if not self.show_bars:
            kwargs["disable"] = True  # otherwise tqdm's own default (TQDM_DISABLE) holds
        return tqdm(iterable, **{"ncols": 100, **kwargs})


class StderrAnnouncer(LineAnnouncer):
    """The command line's: lines on stderr, and a live tqdm bar on a terminal (a line per refresh
    in a log); nothing at all when `quiet`."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.show_bars = not quiet

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def bar(self, iterable: Iterable | None = None, **kwargs) -> tqdm:
        if self.show_bars and sys.stderr.isatty():
            return tqdm(iterable, file=sys.stderr, **{**kwargs, "leave": False})
        return super().bar(iterable, **kwargs)


def verbosity(config: pytest.Config) -> tuple[bool, bool]:
    """(show the start and end lines, show the bars): both by default, lines only under -q, none under -qq."""
    level = config.option.verbose
    return level >= -1, level >= 0


class TerminalProgress(LineAnnouncer):
    """The controller's lines, and the lines it follows from the workers' files."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.show_lines, self.show_bars = verbosity(config)
        self.directory = Path(tempfile.mkdtemp(prefix="lpi-claims-progress-"))
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.read: dict[Path, int] = {}
        self.thread: threading.Thread | None = None

    def worker_directory(self) -> str:
        """Where a worker writes its lines; the first call starts following them."""
        if self.thread is None:
            self.thread = threading.Thread(target=self._follow, name="lpi-claims-progress", daemon=True)
            self.thread.start()
        return str(self.directory)

    def __call__(self, message: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        if reporter is None or not self.show_lines:
            return
        with self.lock, capture.global_and_fixture_disabled() if capture is not None else nullcontext():
            reporter.ensure_newline()
            reporter.write_line(f"lpi-claims: {message}")

    def _follow(self, interval: float = 0.5) -> None:
        while not self.stopped.wait(interval):
            self.flush()

    def flush(self) -> None:
        """Print the workers' lines written since the last call."""
        for path in sorted(self.directory.glob("*.log")):
            with open(path, encoding="utf-8") as f:
                f.seek(self.read.get(path, 0))
                text = f.read()
            complete = text[: text.rfind("\n") + 1]  # a line still being written waits for the next call
            self.read[path] = self.read.get(path, 0) + len(complete.encode("utf-8"))
            for line in complete.splitlines():
                self(f"[{path.stem}] {line}")

    def close(self) -> None:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join()
            self.flush()
        shutil.rmtree(self.directory, ignore_errors=True)


class WorkerProgress(LineAnnouncer):
    """A worker's lines, appended to its own file for the controller to print."""

    def __init__(self, directory: str, worker: str, config: pytest.Config) -> None:
        self.path = Path(directory) / f"{worker}.log"
        self.show_lines, self.show_bars = verbosity(config)

    def __call__(self, message: str) -> None:
        if not self.show_lines:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(message.replace("\n", " ") + "\n")


def progress_for(config: pytest.Config) -> Announcer:
    """The announcer of this process: the controller's terminal, a worker's file, or nothing."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        directory = workerinput.get(WORKER_INPUT)
        return (
            WorkerProgress(directory, os.environ.get("PYTEST_XDIST_WORKER", "worker"), config) if directory else silent
        )
    plugin = config.pluginmanager.get_plugin("lpi-claims-progress")
    return plugin if plugin is not None else silent
