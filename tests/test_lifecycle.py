"""Master and Communicator lifetimes: close, context managers, addresses,
an unreachable master.  World size 1 runs in the test process."""
import gc
import socket
import time
import weakref

import numpy as np
import pytest

import pyccl
from pyccl.communicator import parse_master

pytestmark = pytest.mark.timeout(120)


def test_master_properties_and_close():
    m = pyccl.Master()
    try:
        assert 0 < m.port < 65536
        assert m.address == "127.0.0.1:%d" % m.port
        assert m.epoch == 0
        assert "listening" in repr(m)
    finally:
        m.close()
    m.close()  # idempotent
    assert m.closed
    with pytest.raises(pyccl.Closed):
        m.epoch


def test_master_context_manager_and_gc():
    with pyccl.Master() as m:
        port = m.port
    assert m.closed
    # The port is free again: a new master can take it.
    with pyccl.Master(port=port) as again:
        assert again.port == port
    leaked = pyccl.Master()
    leaked_port = leaked.port
    gone = weakref.ref(leaked)
    del leaked
    gc.collect()
    assert gone() is None
    # The ffi.gc safety net destroyed it: nothing listens there any more.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", leaked_port), timeout=5)


def test_master_port_in_use():
    with pyccl.Master() as m:
        with pytest.raises(pyccl.CommIOError,
                           match="bind 127.0.0.1:%d: Address already in use"
                           % m.port):
            pyccl.Master(port=m.port)


def test_master_bad_arguments():
    with pytest.raises(pyccl.InvalidArgument):
        pyccl.Master(port=70000)
    with pytest.raises(pyccl.InvalidArgument):
        pyccl.Master(host="")


def test_parse_master():
    assert parse_master("10.1.2.3:29400") == ("10.1.2.3", 29400)
    assert parse_master(("h", 5)) == ("h", 5)
    assert parse_master("[::1]:7") == ("::1", 7)
    for bad in ("nohost", ":5", "h:", "h:x", ("h",), ("h", "5"), 5, None):
        with pytest.raises(pyccl.InvalidArgument):
            parse_master(bad)


def test_world_of_one_in_process():
    with pyccl.Master() as m:
        with pyccl.Communicator(m, world_size=1) as comm:
            assert (comm.rank, comm.world_size, comm.size) == (0, 1, 1)
            assert comm.epoch >= 1
            assert m.epoch >= 1
            x = np.arange(5, dtype=np.float32)
            assert comm.all_reduce(x) is x
            assert np.array_equal(x, np.arange(5, dtype=np.float32))
            out = np.empty_like(x)
            comm.all_reduce(x, "max", out=out, algorithm="star")
            assert np.array_equal(out, x)
            assert np.array_equal(comm.all_gather(x), x[None])
            assert np.array_equal(comm.reduce_scatter(x), x)
            assert comm.broadcast(x, 0) is x
            assert comm.barrier() is None
            w = comm.all_reduce(x, async_op=True)
            assert w.wait() is x
            assert {"tx_bytes", "rx_bytes"} <= set(comm.stats().as_dict())
        assert comm.closed
        comm.close()  # idempotent
        for call in (lambda: comm.all_reduce(x), comm.barrier,
                     comm.stats, lambda: comm.epoch):
            with pytest.raises(pyccl.Closed) as info:
                call()
            assert isinstance(info.value, RuntimeError)
        # Identity stays readable after close.
        assert (comm.rank, comm.world_size) == (0, 1)


def test_communicator_address_forms():
    with pyccl.Master() as m:
        for master in (m.address, ("127.0.0.1", m.port), m):
            with pyccl.Communicator(master, 1, 0) as comm:
                assert comm.world_size == 1


def test_communicator_bad_arguments():
    with pytest.raises(pyccl.InvalidArgument):
        pyccl.Communicator("127.0.0.1:1", world_size=0)
    with pytest.raises(pyccl.InvalidArgument):
        pyccl.Communicator("127.0.0.1:1", world_size=2, rank=2)
    with pytest.raises(pyccl.InvalidArgument):
        pyccl.Communicator("127.0.0.1:1", 1, conns_per_peer=65)
    with pytest.raises(pyccl.InvalidArgument):
        pyccl.Communicator("127.0.0.1:1", 1, op_timeout=0)
    with pytest.raises(pyccl.InvalidArgument):
        pyccl.Communicator("127.0.0.1:1", 1, connect_timeout=-1.0)


def test_master_unreachable_within_connect_timeout(refusing_port):
    start = time.monotonic()
    with pytest.raises(pyccl.MasterUnreachable) as info:
        pyccl.Communicator("127.0.0.1:%d" % refusing_port, world_size=2, rank=0,
                           connect_timeout=2.0)
    took = time.monotonic() - start
    assert isinstance(info.value, ConnectionError)
    assert took < 2.0 + 3.0, took
    assert info.value.detail  # says what failed


def test_group_never_completes_times_out():
    # One of two ranks arrives: registration must give up at the deadline.
    with pyccl.Master() as m:
        start = time.monotonic()
        with pytest.raises(pyccl.Timeout, match="waiting for the group") \
                as info:
            pyccl.Communicator(m, world_size=2, rank=0, connect_timeout=1.5)
        took = time.monotonic() - start
        assert 1.5 - 0.1 <= took < 1.5 + 3.0, took
        assert isinstance(info.value, TimeoutError)
