"""The pyccl command: demo (end to end), master (start, serve, log lines,
SIGTERM), --version, bench's own arguments, argument parsing."""
import os
import re
import signal
import subprocess
import sys

import pytest

import pyccl
from pyccl import argtypes, cli, demo
from tests import raw_client

pytestmark = pytest.mark.timeout(300)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, timeout=240):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep
               + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "pyccl", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_parse_size():
    assert argtypes.parse_size("4") == 4
    assert argtypes.parse_size("4K") == 4096
    assert argtypes.parse_size("1M") == 1 << 20
    assert argtypes.parse_size("16MiB") == 16 << 20
    assert argtypes.parse_size("2g") == 2 << 30
    for bad in ("", "K", "1.5M", "4X", "-4"):
        with pytest.raises(ValueError):
            argtypes.parse_size(bad)
    assert argtypes.format_size(4096) == "4K"
    assert argtypes.format_size(6) == "6"


def test_demo_data_is_exact():
    for n in (1, 2, 5):
        total = sum(demo.pattern(100, r).astype("float64") for r in range(n))
        assert (total == demo.expected_sum(100, n)).all()


def test_demo_end_to_end():
    proc = _run("demo", "--peers", "3", "--sizes", "4,4K,256K", "--iters",
                "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    table = [l.split() for l in lines if l.split()[0] in ("4", "4K", "256K")]
    assert [row[0] for row in table] == ["4", "4K", "256K"]
    assert all(row[1] == "auto" and row[-1] == "ok" for row in table), lines
    assert all(float(row[2]) > 0 for row in table)
    # Three peers on one host: every pair in shared memory, unless the
    # environment turned it off (docs/design.md, "Same-host connections").
    want = 0 if os.environ.get("PYCCL_SHM") == "0" else 3
    assert "transport: %d of 3 peer pairs through shared memory" % want \
        in proc.stdout, proc.stdout


def test_demo_ring_algorithm_in_process(capsys):
    assert demo.run(peers=2, sizes=[4096, 12], iters=1,
                    algorithm="ring") == 0
    out = capsys.readouterr().out
    assert out.count(" ok") == 2 and "ring" in out


def test_demo_bad_size_is_a_usage_error():
    proc = _run("demo", "--sizes", "4,6")
    assert proc.returncode != 0
    assert "f32" in proc.stderr or "size" in proc.stderr


def test_master_command_serves_logs_and_stops_on_sigterm():
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("PYCCL_LOG_LEVEL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyccl", "master", "--port", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"listening on 127\.0\.0\.1:(\d+) ", line)
        assert match, line
        address = "127.0.0.1:%s" % match.group(1)
        with pyccl.Communicator(address, 1, connect_timeout=10) as comm:
            assert comm.world_size == 1
        # Not pyccl: the master refuses it and says so through logging.
        with raw_client.connect(int(match.group(1))) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n" + bytes(64))
            raw_client.read_until_closed(sock)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "stopping" in out
        # The core's line, formatted by the command's logging setup.
        assert re.search(r"pyccl WARNING: pyccl master: refused connection "
                         r"from 127\.0\.0\.1", err), err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_version():
    proc = _run("--version", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "pyccl %s (C core %s, protocol %d)" % (
        pyccl.__version__, pyccl.c_version(), pyccl.PROTOCOL_VERSION)


def test_master_command_port_in_use():
    with pyccl.Master() as m:
        proc = _run("master", "--port", str(m.port), timeout=30)
    assert proc.returncode == 1
    assert "pyccl master:" in proc.stderr


def test_bench_takes_its_own_arguments(capsys):
    # Arguments after "bench" belong to pyccl bench's own parser.
    with pytest.raises(SystemExit) as info:
        cli.main(["bench", "--help"])
    assert info.value.code == 0
    assert "--hang-timeout" in capsys.readouterr().out


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("master", "demo", "bench"):
        assert command in out
