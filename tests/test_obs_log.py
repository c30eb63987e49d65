"""Log lines for membership changes, failures and rejections, with peer
identity and cause; JSON lines on request (PYCCL_LOG_FORMAT=json or
pyccl.log.use_json)."""
from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys

import pyccl
import pyccl.log

from tests.obs_group import Group

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_lost_peer_failure_and_new_epoch_are_logged(core_log, tmp_path):
    with pyccl.Master() as master:
        g = Group(master, 4, "lose_peer", (str(tmp_path),), op_timeout=20,
                  peer_timeout=5)
        try:
            out = g.results(timeout=120, ranks=[0, 1, 3])
        finally:
            g.close()
        # The master: the dead member, by rank and address, and why.
        left = core_log.wait_for("left epoch 1")
        assert "rank 2 (127.0.0.1:" in left.getMessage()
        core_log.wait_for("epoch 2 formed")
    assert out == [(2, 3)] * 3
    for r in (0, 1, 3):
        lines = _lines(tmp_path / ("rank%d.jsonl" % r))
        assert all({"time", "level", "logger", "message"} <= set(l)
                   for l in lines)
        lost = [l for l in lines if l.get("event") == "peer_lost"]
        # The first loss of the epoch is a warning (later ones are mostly
        # the others leaving epoch 1 as they move on).
        assert lost and lost[0]["level"] == "warning", lines
        # Peer identity (rank and address) and the cause.
        # (Epoch 2 may log losses too: connections cut at the end.)
        [dead] = [l for l in lost if l.get("peer") == 2 and l["epoch"] == 1]
        assert dead["addr"].startswith("127.0.0.1:")
        assert "closed by the peer" in dead["message"] or \
            "reset" in dead["message"]
        assert any(l.get("event") == "op_failed" and "failed" in l["message"]
                   for l in lines), lines
        new = [l for l in lines if "new epoch 2" in l["message"]]
        assert len(new) == 1 and new[0]["level"] == "info"


def test_rejection_is_logged(core_log):
    with pyccl.Master() as master:
        # A world_size that differs from the waiting peer's is refused.
        first = Group(master, 1, "ring_ops", (0, 1, 0.0))  # noqa: F841
        try:
            try:
                pyccl.Communicator(master.address, world_size=3,
                                   connect_timeout=5)
            except pyccl.CclError:
                pass
            rec = core_log.wait_for("refused peer")
            assert rec.levelno == logging.WARNING
            assert "127.0.0.1:" in rec.getMessage()
        finally:
            first.close()


def test_json_formatter_and_use_json():
    buf = io.StringIO()
    handler = pyccl.log.use_json(buf)
    try:
        pyccl.log.logger.warning("rank 3, epoch 7: lost peer 1 "
                                 "(10.0.0.2:29500) connection 0: EOF")
        doc = json.loads(buf.getvalue().splitlines()[-1])
        assert doc["level"] == "warning" and doc["logger"] == "pyccl"
        assert doc["rank"] == 3 and doc["epoch"] == 7 and doc["peer"] == 1
        assert doc["addr"] == "10.0.0.2:29500"
        assert doc["event"] == "peer_lost"
        assert pyccl.log.logger.propagate is False
    finally:
        pyccl.log.logger.removeHandler(handler)
        pyccl.log.logger.propagate = True
        pyccl.log._json_handler = None


def test_pyccl_log_format_json_env():
    code = ("import pyccl\n"
            "m = pyccl.Master()\n"
            "c = pyccl.Communicator(m.address, world_size=1)\n"
            "c.close(); m.close()\n"
            "import pyccl.log; pyccl.log._stop_at_exit()\n")
    env = dict(os.environ, PYCCL_LOG_FORMAT="json", PYCCL_LOG_LEVEL="info",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    docs = [json.loads(l) for l in out.stderr.splitlines() if l.strip()]
    joined = [d for d in docs if "joined epoch 1" in d["message"]]
    assert joined and joined[0]["event"] == "membership"
    assert joined[0]["epoch"] == 1 and joined[0]["rank"] == 0
