"""The master under connection floods (docs/security.md, "Floods"): many
source addresses (127.0.0.0/8 gives a distinct source per address) cannot
keep a legitimate peer out, and a master that runs out of file
descriptors (a low RLIMIT_NOFILE, set in its own process) backs off
instead of spinning.  The master runs in a subprocess so that its CPU time
can be read from /proc and its limit set apart from the test's."""
import os
import secrets
import socket
import subprocess
import sys
import threading
import time

import pytest

import pyccl

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not sys.platform.startswith("linux"),
                                 reason="reads /proc and binds 127.x sources")]

KEY = secrets.token_hex(32)
MASTER = """
import resource, sys
if {nofile}:
    resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile}, {nofile}))
import pyccl
m = pyccl.Master(key={key!r})
print(m.port, flush=True)
sys.stdin.read()
"""


def start_master(nofile=0):
    proc = subprocess.Popen(
        [sys.executable, "-c", MASTER.format(nofile=nofile, key=KEY)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True)
    port = int(proc.stdout.readline())
    return proc, port


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def silent_connections(port, sources, per_source):
    """per_source connections from each of `sources` addresses 127.0.i.9,
    opened without waiting (nonblocking connect) and never written to."""
    socks = []
    for n in range(per_source):
        for i in range(sources):
            s = socket.socket()
            s.setblocking(False)
            s.bind(("127.0.%d.9" % i, 0))
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            socks.append(s)
    return socks


def register_alone(port):
    """Seconds a world-size-1 communicator takes to register and form."""
    t0 = time.monotonic()
    with pyccl.Communicator("127.0.0.1:%d" % port, world_size=1, key=KEY,
                            connect_timeout=20.0):
        return time.monotonic() - t0


def test_many_address_flood_does_not_keep_a_member_out():
    """256 source addresses x 20 silent connections each (5120), kept open:
    a legitimate peer registers within 1 s while they are held, and a
    second wave of the same size arriving during its registration does not
    stop it either; the master is idle again once the flood is in."""
    proc, port = start_master()
    socks = []
    try:
        socks += silent_connections(port, 256, 20)
        time.sleep(0.5)
        c0 = cpu_seconds(proc.pid)
        time.sleep(1.0)
        idle_cpu = cpu_seconds(proc.pid) - c0
        took = register_alone(port)
        wave = []
        t = threading.Thread(target=lambda: wave.extend(
            silent_connections(port, 256, 20)))
        t.start()
        took2 = register_alone(port)
        t.join()
        socks += wave
        print("flood of %d connections: registration %.3f s held, %.3f s "
              "during a second wave; master CPU %.0f%% with the flood held"
              % (len(socks), took, took2, idle_cpu * 100))
        assert took < 1.0
        assert took2 < 2.0
        assert idle_cpu < 0.2
    finally:
        for s in socks:
            s.close()
        proc.kill()
        proc.wait()


def test_out_of_fds_backs_off_without_spinning():
    """A master limited to 20 open files (fewer than its own budget
    assumes), flooded with 300 silent connections from 30 addresses:
    accept fails with EMFILE; the master shrinks its budget to what fits,
    sheds strangers and pauses instead of retrying in a loop (CPU stays
    low), and a peer still registers within 1 s while the flood is held."""
    proc, port = start_master(nofile=20)
    socks = []
    try:
        socks += silent_connections(port, 30, 10)
        time.sleep(0.3)
        c0 = cpu_seconds(proc.pid)
        time.sleep(1.5)
        busy = (cpu_seconds(proc.pid) - c0) / 1.5
        took = register_alone(port)
        print("out of fds: master CPU %.0f%% while flooded; registration %.3f s"
              % (busy * 100, took))
        assert busy < 0.2
        assert took < 1.0
    finally:
        for s in socks:
            s.close()
        proc.kill()
        proc.wait()
