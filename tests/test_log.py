"""The C core's log lines arrive through Python's logging (pyccl.log): a
real master refuses a raw client that does not speak pyccl, and its line
reaches the "pyccl" logger at WARNING, read by one Python thread.  In a
fresh process with no logging configured, warnings still reach stderr
(Python's last-resort handler), PYCCL_LOG_LEVEL sets both levels, and
lines queued at exit are not lost."""
import logging
import os
import subprocess
import sys
import textwrap
import threading

import pytest

import pyccl
from tests.raw_client import connect, read_until_closed

pytestmark = pytest.mark.timeout(120)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def knock(port):
    """Connects, sends bytes that are not pyccl, waits for the close."""
    with connect(port) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n" + bytes(64))
        assert read_until_closed(sock) is not None


def test_refused_connection_arrives_as_a_warning_record(core_log):
    with pyccl.Master() as master:
        knock(master.port)
        record = core_log.wait_for("refused connection")
    assert record.name == "pyccl"
    assert record.levelno == logging.WARNING
    assert "pyccl master: refused connection from 127.0.0.1" in \
        record.getMessage()
    # Delivered by pyccl's own reader thread, never by a thread of the core.
    assert record.threadName == "pyccl-log"


def test_one_reader_thread_per_process():
    with pyccl.Master() as m1, pyccl.Master() as m2:
        with pyccl.Communicator(m1, world_size=1), \
                pyccl.Communicator(m2, world_size=1):
            readers = [t for t in threading.enumerate()
                       if t.name == "pyccl-log"]
    assert len(readers) == 1 and readers[0].daemon


def run_script(body, **env_extra):
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("PYCCL_LOG_LEVEL", None)
    env.update(env_extra)
    script = textwrap.dedent("""
        import logging, pyccl
        from tests.raw_client import connect, read_until_closed
        def knock(port):
            with connect(port) as sock:
                sock.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n" + bytes(64))
                read_until_closed(sock)
    """) + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc


# The master is closed right after the refusal and the process ends: the
# line is still in the core's queue then, so this also shows that the
# exit hook delivers it.
KNOCK_AND_EXIT = """
    with pyccl.Master() as master:
        knock(master.port)
    print(logging.getLogger("pyccl").level)
"""


def test_unconfigured_process_prints_warnings_on_stderr():
    proc = run_script(KNOCK_AND_EXIT)
    assert "pyccl master: refused connection from 127.0.0.1" in proc.stderr
    assert proc.stdout.split() == [str(logging.NOTSET)]


def test_insecure_mode_warning_through_logging():
    proc = run_script("""
        logging.basicConfig(format="%(name)s %(levelname)s %(message)s")
        with pyccl.Master("0.0.0.0", 0, allow_insecure=True):
            pass
    """)
    assert "pyccl WARNING no key configured and allow_insecure is set" \
        in proc.stderr, proc.stderr


@pytest.mark.parametrize("name,level", [("error", logging.ERROR),
                                        ("debug", logging.DEBUG)])
def test_pyccl_log_level_sets_both_levels(name, level):
    proc = run_script(KNOCK_AND_EXIT, PYCCL_LOG_LEVEL=name.upper())
    assert proc.stdout.split() == [str(level)]
    # At "error" the core does not even produce the warning.
    refused = "refused connection" in proc.stderr
    assert refused == (level <= logging.WARNING), proc.stderr


def test_unknown_level_is_warned_about_and_ignored():
    proc = run_script(KNOCK_AND_EXIT, PYCCL_LOG_LEVEL="loud")
    assert "PYCCL_LOG_LEVEL='loud' is not one of" in proc.stderr
    assert "refused connection" in proc.stderr


def test_forked_child_logs_while_the_parent_reader_waits():
    # The parent's reader thread sits in ccl_log_read (a condition
    # variable wait) when os.fork() runs; the child, where that thread
    # does not exist, then logs through the same condition variable.
    # Before log.c reset it at fork, every such child hung in its first
    # log line (multiprocessing's fork start method: a Master in the
    # parent, the peers in children).
    proc = run_script("""
        import os, time
        from pyccl.log import start_reader
        start_reader()
        hung = 0
        for i in range(3):
            time.sleep(0.05 * (i + 1))  # the reader waits in ccl_log_read
            pid = os.fork()
            if pid == 0:
                with pyccl.Master(port=0) as m:
                    with pyccl.Communicator(m, world_size=1) as c:
                        c.barrier()
                os._exit(0)
            deadline = time.time() + 15
            while not os.waitpid(pid, os.WNOHANG)[0]:
                if time.time() > deadline:
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    hung += 1
                    break
                time.sleep(0.05)
        print("hung", hung)
    """)
    assert proc.stdout.split() == ["hung", "0"], proc.stderr
