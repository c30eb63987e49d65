"""The master's view over HTTP, read with a real HTTP client (urllib):
JSON, Prometheus text (checked by a strict parser here, and by
prometheus_client's own parser when it is installed), `pyccl status`,
and `pyccl master --http-port` as a process."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

import pyccl
from pyccl import status_cli
from pyccl.metrics_http import MetricsServer, view_prometheus
from pyccl.stats import LinkReport, MasterStats, MemberReport

from tests.obs_group import Group

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(r"^(%s)(?:\{(.*)\})? (\S+)$" % _NAME)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')


def strict_parse(text):
    """Parses Prometheus text format 0.0.4 strictly: every metric has HELP
    and TYPE (counter or gauge) before its samples, named as its samples
    (a counter's name ends in _total), every sample belongs to the metric
    declared last, labels are well-formed and unique, values are floats,
    no (name, labels) twice.  Returns {name without _total: [(labels,
    value)]}."""
    assert text.endswith("\n")
    families, seen = {}, set()
    current = kind = None
    helped = set()
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert re.fullmatch(_NAME, name), line
            helped.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge"), line
            assert (kind == "counter") == name.endswith("_total"), line
            assert name in helped and name not in families, line
            current = name
            families[name] = []
            continue
        assert not line.startswith("#") and line, repr(line)
        m = _SAMPLE.match(line)
        assert m, repr(line)
        name, labels_text, value = m.groups()
        assert name == current, (name, current)
        labels = {}
        if labels_text:
            pos = 0
            while pos < len(labels_text):
                lm = _LABEL.match(labels_text, pos)
                assert lm, labels_text
                assert lm.group(1) not in labels
                labels[lm.group(1)] = lm.group(2)
                pos = lm.end()
        v = float(value)
        assert not math.isnan(v)
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen, key
        seen.add(key)
        families[current].append((labels, v))
    return {(k[:-6] if k.endswith("_total") else k): v
            for k, v in families.items()}


def get(url):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.headers.get("Content-Type"), resp.read().decode()


def test_endpoint_serves_json_and_prometheus():
    with pyccl.Master() as master, MetricsServer(master) as http:
        assert http.host == "127.0.0.1"  # localhost by default
        g = Group(master, 3, "ring_ops", (4, 1 << 18, 0.3), stats_report=0.1)
        try:
            g.results(timeout=120)
            # The members stay connected until close(): on a loaded
            # machine their last report (every 0.1 s) may come after the
            # settle pause, so read until it is in (or 20 s passed).
            deadline = time.monotonic() + 20
            while True:
                status, ctype, body = get(http.url + "/stats.json")
                assert status == 200 and ctype == "application/json"
                doc = json.loads(body)
                if all(m.get("ops_ok") == 6 for m in doc.get("members", [])) \
                        or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            status, ctype, prom = get(http.url + "/metrics")
            assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
            table = status_cli.render(status_cli.fetch(
                "127.0.0.1:%d" % http.port))
        finally:
            g.close()
        with pytest.raises(urllib.error.HTTPError) as err:
            get(http.url + "/nothing")
        assert err.value.code == 404
    assert doc["epoch"] == 1 and len(doc["members"]) == 3
    assert sorted(m["rank"] for m in doc["members"]) == [0, 1, 2]
    assert all(m["ops_ok"] == 6 for m in doc["members"])  # 4 + 2 barriers
    # Each member reports the link it receives the ring on.
    assert sorted((l["src"], l["dst"]) for l in doc["links"]) == [
        (0, 1), (1, 2), (2, 0)]
    assert all(l["rx_rate"] > 0 and l["samples"] >= 1 for l in doc["links"])
    assert doc["flagged"] == [] and doc["slow_flags_raised"] == 0

    fams = strict_parse(prom)
    assert fams["pyccl_master_epoch"] == [({}, 1.0)]
    ops = {l["rank"]: v for l, v in fams["pyccl_member_ops"]}
    assert ops == {"0": 6.0, "1": 6.0, "2": 6.0}
    rates = fams["pyccl_link_rx_rate_bytes_per_second"]
    assert len(rates) == 3 and all(v > 0 for _, v in rates)
    assert all(v == 0 for _, v in fams["pyccl_link_slow"])

    assert "RANK" in table and "2 -> 0" in table
    _check_with_prometheus_client(prom, n_links=3)


def _check_with_prometheus_client(prom, n_links):
    parser = pytest.importorskip("prometheus_client.parser")
    parsed = {f.name: f for f in parser.text_string_to_metric_families(prom)}
    # Counters come back as families without "_total", with their samples.
    assert parsed["pyccl_member_ops"].type == "counter"
    assert parsed["pyccl_member_ops"].samples
    assert all(f.type in ("counter", "gauge") for f in parsed.values())
    assert len(parsed["pyccl_link_rtt_seconds"].samples) == n_links
    return parsed


def test_prometheus_text_of_a_view_with_a_slow_link():
    # A view built by hand (labels that need escaping, a flagged link):
    # the strict parser here, then prometheus_client's when installed.
    members = tuple(MemberReport(rank=r, epoch=2, world_size=2,
                                 addr='host "%d"\\x' % r, ops_ok=5,
                                 ops_failed=0, tx_bytes=10, rx_bytes=10,
                                 op_bytes=20, op_time=0.5, age=0.1, reports=3)
                    for r in range(2))
    links = (LinkReport(epoch=2, src=0, dst=1, rx_rate=2e6, rtt=1e-4,
                        rx_bytes=10, samples=4, z=-9.5, slow=True,
                        slow_local=False, flagged_at_ops=2),
             LinkReport(epoch=2, src=1, dst=0, rx_rate=8e6, rtt=1e-4,
                        rx_bytes=10, samples=4, z=0.0, slow=False,
                        slow_local=False, flagged_at_ops=0))
    view = MasterStats(epoch=2, reports=6, reports_dropped=1,
                       reports_unknown_version=0, slow_flags_raised=1,
                       members=members, links=links)
    prom = view_prometheus(view, 1.5, 100.0)
    fams = strict_parse(prom)
    assert {l["addr"] for l, _ in fams["pyccl_member_ops"]} == {
        'host \\"0\\"\\\\x', 'host \\"1\\"\\\\x'}
    assert fams["pyccl_link_slow"] == [({"src": "0", "dst": "1", "epoch": "2"}, 1.0),
                                       ({"src": "1", "dst": "0", "epoch": "2"}, 0.0)]
    parsed = _check_with_prometheus_client(prom, n_links=2)
    addrs = {s.labels["addr"] for s in parsed["pyccl_member_ops"].samples}
    assert addrs == {'host "0"\\x', 'host "1"\\x'}  # unescaped by the parser


def test_pyccl_master_http_port_and_status_cli():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep
               + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyccl", "master", "--port", "0",
         "--http-port", "0", "--print-every", "0.5"], stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        first = proc.stdout.readline()  # "listening on HOST:PORT (...)"
        master_addr = first.split()[4]
        line = proc.stdout.readline()
        m = re.search(r"pyccl status --master (\S+)\)", line)
        assert m, line
        address = m.group(1)
        status, _, body = get("http://%s/stats.json" % address)
        assert status == 200 and json.loads(body)["members"] == []
        out = subprocess.run(
            [sys.executable, "-m", "pyccl", "status", "--master", address],
            capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "0 member(s) reporting" in out.stdout
        assert "\x1b[" not in out.stdout  # not a terminal: no redraw codes
        # A member reports; the master prints the group (--print-every).
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout),
                                  daemon=True)
        reader.start()
        with pyccl.Communicator(master_addr, world_size=1,
                                stats_report=0.1) as comm:
            comm.barrier()
            deadline = time.monotonic() + 60
            while not any("1 member(s) reporting" in l for l in list(lines)):
                assert time.monotonic() < deadline, lines
                time.sleep(0.1)

    finally:
        proc.terminate()
        proc.wait(30)


def test_status_cli_reports_unreachable(refusing_port):
    assert status_cli.run("127.0.0.1:%d" % refusing_port, once=True,
                          timeout=2) == 1
