"""One line per long step of a claims run (a miniature series trained, a record computed), shown
through pytest's terminal writer while the step runs, past output capture.

On the controlling process a line goes to the terminal at once. An xdist worker appends its lines
to a file in a directory the controller gives it; the controller follows those files from a
thread and prints each line with the worker's name, so work done on workers shows as it happens.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
from contextlib import nullcontext
from pathlib import Path
import pytest

from fixtures.series import Announce, silent

WORKER_INPUT = "lpi_claims_progress"  # the key of the progress directory in an xdist worker's input


class TerminalProgress:
    """The controller's lines, and the lines it follows from the workers' files."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
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
        if reporter is None:
            return
        with self.lock, (capture.global_and_fixture_disabled() if capture is not None else nullcontext()):
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


class WorkerProgress:
    """A worker's lines, appended to its own file for the controller to print."""

    def __init__(self, directory: str, worker: str) -> None:
        self.path = Path(directory) / f"{worker}.log"

    def __call__(self, message: str) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(message.replace("\n", " ") + "\n")


def progress_for(config: pytest.Config) -> Announce:
    """The announcer of this process: the controller's terminal, a worker's file, or nothing."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        directory = workerinput.get(WORKER_INPUT)
        return WorkerProgress(directory, os.environ.get("PYTEST_XDIST_WORKER", "worker")) if directory else silent
    plugin = config.pluginmanager.get_plugin("lpi-claims-progress")
    return plugin if plugin is not None else silent
