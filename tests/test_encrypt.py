"""encrypt=True (docs/security.md, "Encryption"), end to end with real
processes and sockets on 127.0.0.1.

Exact results with every frame encrypted (N=2, and N=3 with two
connections per peer and small frames, so one op's frames are spread over
the pool and each is sealed on its own); a member whose setting differs is
refused with a message naming the mismatch; encrypt without a key, or
where libcrypto cannot be loaded, fails at creation with the reason.

What the wire carries and what tampering does are tested with an on-path
relay in csrc/tests/test_relay.c (run by tests/test_c_suite.py): no DATA
payload crosses in clear, a flipped ciphertext byte or header byte is a
link fault on every survivor with inputs intact, nobody is expelled, and
the member left computes exactly after update_topology.  The cipher itself
is checked against published vectors in csrc/tests/test_aead.c.
"""
import concurrent.futures as cf
import ctypes
import secrets

import numpy as np
import pytest

import pyccl
from tests import workers
from tests.peers import run_group

pytestmark = pytest.mark.timeout(180)

KEY = secrets.token_bytes(32)


def _have_libcrypto() -> bool:
    for name in ("libcrypto.so.3", "libcrypto.so.1.1"):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


needs_libcrypto = pytest.mark.skipif(
    not _have_libcrypto(), reason="OpenSSL's libcrypto is not installed")


def sums_of_sizes(comm: pyccl.Communicator) -> list:
    """All-reduces of sizes around the sealing piece (256 KiB) and the
    ring's chunks, with inputs that differ per rank; exact sums."""
    failures = []
    n, r = comm.world_size, comm.rank
    for count in (0, 1, 3, 65535, 65536, 65537, (1 << 20) + 7, 3 << 20):
        i = np.arange(count, dtype=np.int64) % 251
        x = (i + r).astype(np.float32)
        comm.all_reduce(x)
        want = (i * n + n * (n - 1) // 2).astype(np.float32)
        if not np.array_equal(x, want):
            failures.append("all_reduce of %d floats is wrong" % count)
    return failures


@needs_libcrypto
def test_encrypted_collectives_are_exact_n2():
    with pyccl.Master(key=KEY) as master:
        opts = dict(master=master, key=KEY, encrypt=True)
        assert run_group(2, sums_of_sizes, **opts) == [[], []]
        assert run_group(2, workers.async_many, 24, **opts) == [[], []]


@needs_libcrypto
def test_encrypted_collectives_are_exact_n3_two_connections():
    with pyccl.Master(key=KEY) as master:
        opts = dict(master=master, key=KEY, encrypt=True, conns_per_peer=2,
                    chunk_bytes=4096)
        assert run_group(3, workers.everything_small, **opts) == [[], [], []]
        assert run_group(3, sums_of_sizes, **opts) == [[], [], []]


@needs_libcrypto
def test_encrypt_with_frame_mac_too():
    """Both switches on: encryption authenticates every frame anyway (the
    frame MAC is not added on top), and the results are exact."""
    with pyccl.Master(key=KEY) as master:
        assert run_group(2, workers.everything_small, master=master, key=KEY,
                         encrypt=True, frame_mac=True) == [[], []]


def test_encrypt_needs_a_key():
    with pytest.raises(pyccl.InvalidArgument, match="encrypt needs a key"):
        pyccl.Communicator("127.0.0.1:1", world_size=1, encrypt=True)


def test_missing_libcrypto_is_named(monkeypatch):
    """PYCCL_TEST_NO_LIBCRYPTO (a test hook) makes the loader fail as on a
    machine without OpenSSL: creation fails before anything connects,
    naming the library and the fix."""
    monkeypatch.setenv("PYCCL_TEST_NO_LIBCRYPTO", "1")
    with pytest.raises(pyccl.InvalidArgument) as info:
        pyccl.Communicator("127.0.0.1:1", world_size=1, key=KEY, encrypt=True)
    text = str(info.value)
    assert "libcrypto.so.3" in text and "libssl3" in text, text
    assert "encrypt off" in text, text
    # Without encrypt nothing needs the library: the hook changes nothing.
    with pyccl.Master(key=KEY) as master:
        with pyccl.Communicator(master, world_size=1, key=KEY) as comm:
            x = np.ones(4, dtype=np.float32)
            comm.all_reduce(x)
            assert x.tolist() == [1.0] * 4


@needs_libcrypto
def test_encrypt_must_agree(core_log):
    """Rank 0 encrypts, rank 1 does not: the connector (rank 1) fails with
    Mismatch naming the setting; the acceptor (rank 0) refuses the
    connection, logs the cause, and its join fails (when its wait for the
    mesh ends) with the same cause in the message."""

    def join(rank):
        try:
            with pyccl.Communicator(master, world_size=2, rank=rank, key=KEY,
                                    encrypt=(rank == 0), connect_timeout=5):
                return None
        except pyccl.CclError as exc:
            return exc

    with pyccl.Master(key=KEY) as master:
        with cf.ThreadPoolExecutor(2) as pool:
            errors = list(pool.map(join, [0, 1]))
    assert isinstance(errors[1], pyccl.Mismatch), errors
    assert "encryption is off here but on at" in str(errors[1]), errors
    assert isinstance(errors[0], pyccl.CclError), errors
    assert "encryption is on here but off at" in str(errors[0]), errors
    core_log.wait_for("encryption is on here but off at", timeout=5)
