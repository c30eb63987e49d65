"""``pyccl bench --wan``: the parts that need no root, and a tiny
root-only run in network namespaces (skipped without root or tools)."""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import pytest

from pyccl.bench import wan, wan_report
from pyccl.bench.wan_peer import error_bound

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SS = """State Recv-Q Send-Q Local Address:Port Peer Address:Port Process
ESTAB 0 0 10.99.1.1:40001 10.99.1.2:39000
\t cubic wscale:7,7 rto:252 rtt:51.2/0.4 mss:1448 bytes_sent:900 bytes_acked:800 bytes_received:10
ESTAB 0 0 10.99.1.1:40002 10.99.1.2:39000
\t cubic rtt:50.1/0.2 bytes_acked:5000000 bytes_received:10
ESTAB 0 0 [::ffff:10.99.1.1]:46676 [::ffff:10.99.1.3]:29511
\t cubic rtt:50.1/0.2 bytes_acked:564 bytes_received:10
ESTAB 0 0 [fe80::1]:46676 [fe80::2]:29511
\t cubic rtt:50.1/0.2 bytes_acked:7 bytes_received:10
"""


def test_every_variant_has_a_label():
    from pyccl.bench.wan_peer import VARIANTS
    assert set(wan_report.LABELS) == set(VARIANTS)


def test_parse_rate():
    assert wan.parse_rate("1gbit") == 1e9
    assert wan.parse_rate("500mbit") == 5e8
    with pytest.raises(Exception):
        wan.parse_rate("fast")


def test_parse_ss_and_streams_used():
    before = wan.parse_ss(SS)
    assert before["10.99.1.1:40002 10.99.1.2:39000"]["acked"] == 5000000
    assert before["10.99.1.1:40001 10.99.1.2:39000"]["rtt_ms"] == 51.2
    # a dual-stack socket's line is its own, an unparsed one no one's
    assert before["10.99.1.1:46676 10.99.1.3:29511"]["acked"] == 564
    assert len(before) == 3
    after = wan.parse_ss(SS.replace("5000000", "9000000"))
    used = wan.streams_used(before, after, 1 << 20)
    assert list(used) == ["10.99.1.2"] and len(used["10.99.1.2"]) == 1


def test_error_bound_and_check():
    assert error_bound(None, 4, 12.0, 30.0) == 0.0
    assert error_bound("u8", 4, 12.0, 30.0) == pytest.approx(
        16 * 12 / 510, rel=1e-2)
    ranks = [{"t0": 1.0, "t1": 3.0, "err": 0.1, "bound": 0.2,
              "digest": "a"}, {"t0": 1.5, "t1": 3.2, "err": 0.0,
                               "bound": 0.2, "digest": "a"}]
    assert wan_report.op_time(ranks) == pytest.approx(1.7)
    assert wan_report.check_op("u8", ranks) is None
    ranks[1]["digest"] = "b"
    assert "disagree" in wan_report.check_op("u8", ranks)


def test_skips_without_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    out = io.StringIO()
    assert wan.main(["--peers", "2"], out=out, log=io.StringIO()) == 0
    assert "skipped" in out.getvalue() and "root" in out.getvalue()


def test_tiny_run_in_namespaces():
    # With root but no delay line (libnetfilter-queue-dev missing, as on
    # CI), the namespaces, tbf and the checks still run, without delay.
    rtt = "4"
    if wan.why_skipped(need_delay=True):
        why = wan.why_skipped(need_delay=False)
        if why:
            pytest.skip(why)
        rtt = "0"
    env = dict(os.environ, PYTHONPATH=REPO)
    r = subprocess.run(
        [sys.executable, "-m", "pyccl", "bench", "--wan", "--peers", "2",
         "--size", "1M", "--rounds", "1", "--rtt-ms", rtt,
         "--variants", "auto,k1,u8", "--op-timeout", "40",
         "--no-full-warmup"],
        capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pyccl u8, K auto" in r.stdout and "FAILED" not in r.stdout
    tag = re.search(r"namespaces (pstw\d+)\*", r.stderr).group(1)
    names = subprocess.run(["ip", "netns", "list"], capture_output=True,
                           text=True).stdout.split()
    assert not [n for n in names if n.startswith(tag)]  # all torn down
