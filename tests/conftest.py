"""Shared fixtures.  Tests import pyccl from the checkout (build it first:
``pip install -e . --no-build-isolation`` or ``python bindings/build_ccl.py``)
and run groups of real processes on 127.0.0.1 (see tests/peers.py)."""
import socket

import pytest


@pytest.fixture
def torch():
    """The torch module, or skip the test when torch is not installed."""
    return pytest.importorskip("torch")


@pytest.fixture
def free_port():
    """A TCP port on 127.0.0.1 where nothing listens (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
