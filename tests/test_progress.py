"""Progress bars: drawn on terminals (or with PYCCL_PROGRESS=1), silent
otherwise."""
from __future__ import annotations

import io
import os
import pty
import select

from pyccl.progress import Progress


def test_silent_when_not_a_terminal(monkeypatch):
    monkeypatch.delenv("PYCCL_PROGRESS", raising=False)
    out = io.StringIO()
    with Progress(10, "x", stream=out) as bar:
        assert not bar.active
        bar.update(10)
    assert out.getvalue() == ""


def test_draws_on_a_terminal(monkeypatch):
    monkeypatch.delenv("PYCCL_PROGRESS", raising=False)
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            with Progress(4, "bench", stream=tty) as bar:
                assert bar.active
                for _ in range(4):
                    bar.update(1, "ok")
        # The terminal hands the bytes over in pieces: read until the
        # bar's last line ends (close() writes the newline).
        text = ""
        while not text.endswith("\n"):
            ready, _, _ = select.select([master], [], [], 10.0)
            assert ready, text
            text += os.read(master, 4096).decode()
    finally:
        os.close(master)
        os.close(slave)
    assert "\r" in text and "bench [" in text and "100%" in text
    assert "4 / 4 ok" in text


def test_bytes_and_env_override(monkeypatch):
    monkeypatch.setenv("PYCCL_PROGRESS", "1")
    out = io.StringIO()
    with Progress(3 << 20, "fetch", unit="bytes", stream=out) as bar:
        bar.update(3 << 20)
    assert "3.0 MiB / 3.0 MiB" in out.getvalue()
    monkeypatch.setenv("PYCCL_PROGRESS", "0")
    assert not Progress(1, "x", stream=out).active


def test_write_above_the_bar(monkeypatch):
    monkeypatch.setenv("PYCCL_PROGRESS", "1")
    out = io.StringIO()
    with Progress(2, "wan", stream=out) as bar:
        bar.update(1)
        bar.write("round 1 done")
    text = out.getvalue()
    # The bar's line is cleared, the text printed, the bar drawn again.
    assert "\r\x1b[Kround 1 done\n\rwan [" in text
    monkeypatch.setenv("PYCCL_PROGRESS", "0")
    out = io.StringIO()
    Progress(2, "wan", stream=out).write("plain")
    assert out.getvalue() == "plain\n"
