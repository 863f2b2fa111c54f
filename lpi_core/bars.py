"""Progress bars of the long loops: tqdm's own on stderr, none, or one that the caller makes."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from tqdm.auto import tqdm

BarFactory = Callable[..., tqdm]  # called like tqdm(iterable, desc=..., total=...); returns a tqdm
Progress = bool | BarFactory


def progress_bar(progress: Progress, iterable: Iterable | None = None, **kwargs) -> tqdm:
    """`progress`: True shows tqdm's bar, False none; a BarFactory (e.g. one reporting past pytest's
    capture, claims/running/progress.py) makes the bar itself."""
    if callable(progress):
        return progress(iterable, **kwargs)
    return tqdm(iterable, disable=not progress, **kwargs)
