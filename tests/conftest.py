"""Shared fixtures.  Tests import pyccl from the checkout (build it first:
``pip install -e . --no-build-isolation`` or ``python bindings/build_ccl.py``)
and run groups of real processes on 127.0.0.1 (see tests/peers.py)."""
import logging
import queue
import socket
import time

import pytest


@pytest.fixture
def torch():
    """The torch module, or skip the test when torch is not installed."""
    return pytest.importorskip("torch")


class CoreLog(logging.Handler):
    """Records of the "pyccl" logger (the C core's lines, forwarded by
    pyccl.log), handed over as they arrive: a test waits for the line it
    expects instead of sleeping."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: "queue.Queue[logging.LogRecord]" = queue.Queue()
        self.seen: list = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.put(record)

    def wait_for(self, text: str, timeout: float = 10.0) -> logging.LogRecord:
        """The first record whose message contains ``text``; fails the
        test if none arrives within ``timeout`` seconds."""
        for record in self.seen:
            if text in record.getMessage():
                return record
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                record = self.records.get(timeout=max(0.0, left))
            except queue.Empty:
                pytest.fail("no log line containing %r within %gs; got %r"
                            % (text, timeout,
                               [r.getMessage() for r in self.seen]))
            self.seen.append(record)
            if text in record.getMessage():
                return record


@pytest.fixture
def core_log():
    """A :class:`CoreLog` attached to the "pyccl" logger for the test."""
    logger = logging.getLogger("pyccl")
    handler = CoreLog()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


@pytest.fixture
def refusing_port():
    """A port on 127.0.0.1 that refuses connections for the whole test: a
    socket is bound there (so nothing else can take it) but never listens."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]
