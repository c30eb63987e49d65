"""The authenticated handshake (docs/security.md), end to end.

A raw-socket client written here from the protocol document (Python's own
hmac/hashlib, not our C code) talks to a real master: a correct proof is
accepted and the master's answer verifies, a replayed handshake and a wrong
key get the refusal, a keyless client is turned away.  Then real groups of
processes: the same key works, a wrong or missing key fails with AuthError
naming the cause, and keys come from arguments, files and the environment.
"""
import os
import secrets
import subprocess
import sys

import pytest

import pyccl
import pyccl.keys
from pyccl.keys import KeyFileWarning, read_key_file, resolve_key
from tests import workers
from tests.peers import GroupError, run_group
from tests.raw_client import (FLAG_AUTH, ROLE_MASTER, closed_within, hello,
                              proof, recv_exact, start_handshake)

pytestmark = pytest.mark.timeout(120)

KEY = b"k" * 16 + secrets.token_bytes(16)


def test_master_accepts_a_correct_proof_and_proves_itself():
    with pyccl.Master(key=KEY) as master:
        assert master.authenticated
        mine = hello()
        sock, theirs = start_handshake(master.port, mine)
        with sock:
            assert theirs[10] == ROLE_MASTER and theirs[11] & FLAG_AUTH
            sock.sendall(proof(KEY, "c", mine, theirs))
            answer = recv_exact(sock, 32)
            # The C core's HMAC-SHA256 agrees with Python's.
            assert answer == proof(KEY, "a", mine, theirs)
            # Authenticated: the master now waits for REGISTER.
            assert not closed_within(sock, 0.5)


def test_replayed_handshake_is_refused():
    with pyccl.Master(key=KEY) as master:
        mine = hello()
        sock, theirs = start_handshake(master.port, mine)
        recorded = proof(KEY, "c", mine, theirs)
        with sock:
            sock.sendall(recorded)
            assert recv_exact(sock, 32) == proof(KEY, "a", mine, theirs)
        # The same bytes again: the master's nonce is new, the proof stale.
        sock, theirs2 = start_handshake(master.port, mine)
        assert theirs2[40:56] != theirs[40:56]
        with sock:
            sock.sendall(recorded)
            assert recv_exact(sock, 32) == bytes(32)  # "your proof was wrong"
            assert closed_within(sock, 5.0)


def test_wrong_key_and_missing_key_are_refused_and_master_keeps_serving():
    with pyccl.Master(key=KEY) as master:
        mine = hello()
        sock, theirs = start_handshake(master.port, mine)
        with sock:
            sock.sendall(proof(b"w" * 32, "c", mine, theirs))
            assert recv_exact(sock, 32) == bytes(32)
            assert closed_within(sock, 5.0)
        # No AUTH flag: closed after the HELLOs, nothing proven either way.
        sock, _ = start_handshake(master.port, hello(flags=0))
        with sock:
            assert recv_exact(sock, 32) == b""
            assert closed_within(sock, 5.0)
        # A client that stops after its HELLO does not hold anything up.
        stalled, _ = start_handshake(master.port, hello())
        with stalled:
            results = run_group(2, workers.ident, master=master, key=KEY)
        assert [r for r, _, _ in results] == [0, 1]


def test_group_with_key_computes_correctly():
    with pyccl.Master(key=KEY) as master:
        results = run_group(3, workers.everything_small, master=master,
                            key=KEY)
    assert all(r == [] for r in results), results


def test_peer_with_wrong_key_gets_auth_error():
    with pyccl.Master(key=KEY) as master:
        with pytest.raises(pyccl.AuthError, match="different keys"):
            pyccl.Communicator(master, world_size=1, key=b"x" * 32,
                               connect_timeout=10)
        with pytest.raises(pyccl.AuthError, match="requires a key"):
            pyccl.Communicator(master, world_size=1, connect_timeout=10)
        # PermissionError is the builtin it also inherits.
        with pytest.raises(PermissionError):
            pyccl.Communicator(master, world_size=1, key=b"y" * 32,
                               connect_timeout=10)


def test_keyless_peer_and_keyed_master_mismatch_named_on_both_ends(core_log):
    with pyccl.Master() as master:
        with pytest.raises(pyccl.AuthError, match="has no key configured"):
            pyccl.Communicator(master, world_size=1, key=KEY,
                               connect_timeout=10)
        # The peer may give up before the master's thread has read its
        # HELLO: wait for the master's side to arrive in the log (by its
        # own words: a refusal by another test's master may come late).
        record = core_log.wait_for("requires a key")
    assert record.levelname == "WARNING"
    assert "refused connection" in record.getMessage()


def test_without_a_key_only_loopback():
    with pytest.raises(pyccl.AuthError, match="not a loopback address"):
        pyccl.Master("0.0.0.0", 0, allow_insecure=False)
    with pytest.raises(pyccl.AuthError, match="not a loopback address"):
        pyccl.Communicator("127.0.0.1:1", world_size=1,
                           listen_host="0.0.0.0", allow_insecure=False)
    # With a key, or with allow_insecure, binding every address is fine.
    with pyccl.Master("0.0.0.0", 0, key=KEY) as master:
        assert master.authenticated
    with pyccl.Master("0.0.0.0", 0, allow_insecure=True) as master:
        assert not master.authenticated


def test_key_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("PYCCL_KEY", raising=False)
    monkeypatch.delenv("PYCCL_KEY_FILE", raising=False)
    pyccl.keys.forget_environment_key()
    assert resolve_key() is None
    monkeypatch.setenv("PYCCL_KEY", "e" * 20)
    assert resolve_key() == b"e" * 20
    # Taken out of the environment once read, remembered by the process.
    assert "PYCCL_KEY" not in os.environ
    assert resolve_key() == b"e" * 20
    pyccl.keys.forget_environment_key()
    path = tmp_path / "key"
    path.write_bytes(b"f" * 24 + b"\n")
    os.chmod(path, 0o600)
    monkeypatch.setenv("PYCCL_KEY_FILE", str(path))
    assert resolve_key() == b"f" * 24  # the file wins, newline dropped
    assert resolve_key(key="g" * 16) == b"g" * 16  # the argument wins
    os.chmod(path, 0o644)
    with pytest.warns(KeyFileWarning, match="other users"):
        resolve_key(key_file=path)
    with pytest.raises(pyccl.InvalidArgument, match="16..1024"):
        resolve_key(key=b"short")
    with pytest.raises(pyccl.InvalidArgument, match="cannot read"):
        resolve_key(key_file=tmp_path / "missing")
    with pytest.raises(pyccl.InvalidArgument, match="not both"):
        resolve_key(key=KEY, key_file=path)


def test_key_file_warning_names_the_callers_line(tmp_path, monkeypatch):
    monkeypatch.delenv("PYCCL_KEY", raising=False)
    path = tmp_path / "open.key"
    path.write_bytes(KEY.hex().encode())
    os.chmod(path, 0o644)
    monkeypatch.setenv("PYCCL_KEY_FILE", str(path))
    calls = [
        (lambda: read_key_file(path), "read_key_file"),
        (lambda: resolve_key(key_file=path), "resolve_key"),
        (lambda: resolve_key(), "resolve_key from the environment"),
        (lambda: pyccl.Master(key_file=str(path)).close(), "Master"),
        (lambda: pyccl.Communicator("127.0.0.1:1", 1, key_file=str(path),
                                    connect_timeout=0.5), "Communicator"),
    ]
    for call, what in calls:
        with pytest.warns(KeyFileWarning) as caught:
            try:
                call()
            except pyccl.MasterUnreachable:
                pass  # the Communicator: the key was read first
        (w,) = [w for w in caught if w.category is KeyFileWarning]
        line = call.__code__.co_firstlineno
        assert (w.filename, w.lineno) == (__file__, line), what


def test_environment_key_reaches_master_and_peers(monkeypatch):
    monkeypatch.setenv("PYCCL_KEY", KEY.hex())
    with pyccl.Master() as master:
        assert master.authenticated
        # Read, then taken out of the environment: a child started now
        # does not inherit it.
        assert "PYCCL_KEY" not in os.environ
        out = subprocess.run([sys.executable, "-c",
                              "import os; print(os.environ.get('PYCCL_KEY'))"],
                             capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == "None"
        # This process still has it for its next objects; workers get it
        # explicitly.
        with pyccl.Master() as again:
            assert again.authenticated
        results = run_group(2, workers.ident, master=master, key=KEY.hex())
        assert len(results) == 2
        # An explicit, different key on a peer fails.
        with pytest.raises(GroupError, match="different keys"):
            run_group(1, workers.ident, master=master, key=b"z" * 32,
                      timeout=30)
    pyccl.keys.forget_environment_key()


def test_keygen_cli(tmp_path):
    path = tmp_path / "run.key"
    out = subprocess.run([sys.executable, "-m", "pyccl", "keygen", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert (os.stat(path).st_mode & 0o777) == 0o600
    key = path.read_text().strip()
    assert len(key) == 64 and int(key, 16) >= 0
    again = subprocess.run([sys.executable, "-m", "pyccl", "keygen",
                            str(path)], capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 1 and "cannot create" in again.stderr
    assert path.read_text().strip() == key  # never overwritten
    with pyccl.Master(key_file=str(path)) as master:
        x = run_group(2, workers.stats_after_allreduce, master=master,
                      key_file=str(path))
        assert len(x) == 2


def test_frame_macs_on_every_collective():
    """frame_mac=True: every collective, striped over 3 connections with
    small frames (so frames of one op are spread and MAC'd separately),
    gives the exact results; async ops in flight too."""
    with pyccl.Master(key=KEY) as master:
        opts = dict(master=master, key=KEY, frame_mac=True, conns_per_peer=3,
                    chunk_bytes=4096)
        assert run_group(3, workers.everything_small, **opts) == [[], [], []]
        assert run_group(2, workers.async_many, 24, **opts) == [[], []]


def test_frame_mac_must_agree_and_needs_a_key():
    with pytest.raises(pyccl.InvalidArgument, match="needs a key"):
        pyccl.Communicator("127.0.0.1:1", world_size=1, frame_mac=True)
    # Two members that disagree (threads of this process: each joins with
    # its own setting): the mesh handshake names the mismatch.
    import concurrent.futures as cf

    def join(rank):
        try:
            with pyccl.Communicator(master, world_size=2, rank=rank, key=KEY,
                                    frame_mac=(rank == 0),
                                    connect_timeout=5):
                return None
        except pyccl.CclError as exc:
            return exc

    with pyccl.Master(key=KEY) as master:
        with cf.ThreadPoolExecutor(2) as pool:
            errors = list(pool.map(join, [0, 1]))
    assert any(isinstance(e, pyccl.Mismatch) and "frame MACs are" in str(e)
               for e in errors), errors
