"""Progress bars for long waits (pyccl bench, joining with a large shared
state), on terminals only.

A :class:`Progress` draws one line, redrawn in place (carriage return) at
most every 0.1 s, on its stream (stderr by default) when that stream is a
terminal, and does nothing at all otherwise: logs, pipes and CI output
stay clean.  ``PYCCL_PROGRESS=0`` turns the bars off everywhere,
``PYCCL_PROGRESS=1`` forces them on (e.g. to test them).
"""
from __future__ import annotations

import os
import sys
import time
from typing import Optional, TextIO

_WIDTH = 30


def _wanted(stream: TextIO) -> bool:
    env = os.environ.get("PYCCL_PROGRESS", "").strip()
    if env == "0":
        return False
    if env == "1":
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return "%.0f %s" % (n, unit) if unit == "B" else "%.1f %s" % (n, unit)
        n /= 1024.0
    return str(n)


class Progress:
    """A bar from 0 to ``total``; ``unit="bytes"`` shows sizes and a rate.

    Use as a context manager, or call :meth:`close` (which ends the line).
    """

    def __init__(self, total: float, label: str, *, unit: str = "",
                 stream: Optional[TextIO] = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.active = _wanted(self.stream) and total > 0
        self.total = float(total)
        self.label = label
        self.unit = unit
        self.done = 0.0
        self.note = ""
        self._start = time.monotonic()
        self._drawn = 0.0
        if self.active:
            self._draw(force=True)

    def update(self, n: float = 1, note: str = "") -> None:
        """Adds ``n`` to the progress (``note``: shown after the bar)."""
        self.done = min(self.total, self.done + n)
        if note:
            self.note = note
        if self.active:
            self._draw(force=self.done >= self.total)

    def write(self, text: str) -> None:
        """Prints a line of ``text`` on the stream above the bar (the bar
        is redrawn under it); without a bar, just the line."""
        if self.active:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        if self.active:
            self._draw(force=True)
        else:
            self.stream.flush()

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._drawn < 0.1:
            return
        self._drawn = now
        frac = self.done / self.total if self.total else 1.0
        fill = int(round(frac * _WIDTH))
        if self.unit == "bytes":
            rate = self.done / max(now - self._start, 1e-9)
            count = "%s / %s, %s/s" % (_fmt_bytes(self.done),
                                       _fmt_bytes(self.total), _fmt_bytes(rate))
        else:
            count = "%d / %d" % (self.done, self.total)
        line = "%s [%s%s] %3.0f%% %s%s" % (
            self.label, "#" * fill, "." * (_WIDTH - fill), 100 * frac, count,
            (" " + self.note) if self.note else "")
        self.stream.write("\r" + line + "\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        if self.active:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
            self.active = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Progress"]
