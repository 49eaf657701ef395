"""A tiny progress bar on stderr, drawn only when stderr is a terminal (no dependency).

Usage::

    with Progress(total=steps, label="reddi2018") as bar:
        for done in ...:
            bar.update(done)

Redraws at most every ``interval`` seconds; when the stream is not a terminal (a pipe, a file,
pytest's capture) nothing is ever written, so scripts and ``--json`` output stay clean.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

__all__ = ["Progress"]


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _format_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{seconds:02d}"
    return f"{minutes:02d}:{seconds:02d}"


class Progress:
    """A one-line bar ``label [#####.....]  42% 4200/10000 00:03<00:04`` on ``stream``.

    ``enabled=None`` (the default) means: draw only if ``stream`` is a terminal.
    """

    def __init__(
        self,
        total: int,
        label: str = "",
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        width: int = 30,
        interval: float = 0.1,
    ) -> None:
        self.total = max(int(total), 0)
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.enabled = _is_terminal(self.stream) if enabled is None else bool(enabled)
        self.width = width
        self.interval = interval
        self.done = 0
        self._start = time.monotonic()
        self._last_draw = float("-inf")
        self._drawn = False

    def update(self, done: int) -> None:
        """Record that ``done`` of ``total`` units are finished (redraws if due)."""
        self.done = min(max(int(done), 0), self.total) if self.total else int(done)
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last_draw >= self.interval or self.done >= self.total:
            self._last_draw = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        fraction = self.done / self.total if self.total else 1.0
        filled = round(self.width * fraction)
        elapsed = now - self._start
        remaining = elapsed / fraction - elapsed if fraction > 0 else 0.0
        prefix = f"{self.label} " if self.label else ""
        text = (
            f"\r{prefix}[{'#' * filled}{'.' * (self.width - filled)}]"
            f" {100 * fraction:3.0f}% {self.done}/{self.total}"
            f" {_format_seconds(elapsed)}<{_format_seconds(remaining)}"
        )
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away: stop drawing
            self.enabled = False
            return
        self._drawn = True

    def close(self) -> None:
        """Erase the bar (if one was drawn) so that following output starts on a clean line."""
        if self.enabled and self._drawn:
            try:
                self.stream.write("\r\033[K")
                self.stream.flush()
            except (OSError, ValueError):
                pass
        self._drawn = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
