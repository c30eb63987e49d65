"""The master's view over HTTP: JSON and Prometheus text.

``pyccl master --http-port 9400`` (or :class:`MetricsServer` around a
:class:`pyccl.Master`) serves, on 127.0.0.1 unless told otherwise:

- ``/stats.json`` (also ``/``): the group as its members last reported it
  (:meth:`pyccl.Master.stats`), plus ops/s measured between samples;
- ``/metrics``: the same as Prometheus text exposition format 0.0.4.

The server is Python's own ``http.server`` on a daemon thread; each
request reads the master's view through one C call (a small lock, never
the master's loop).  It serves GET only and has no authentication: keep it
on localhost, or put it behind something that has.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple

from pyccl.stats import MasterStats

#: Content type of the Prometheus text format.
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Rates:
    """ops/s and bytes/s between two samples at least ``min_gap`` apart."""

    def __init__(self, min_gap: float = 1.0) -> None:
        self._lock = threading.Lock()
        self._min_gap = min_gap
        self._last: Optional[Tuple[float, int, int]] = None
        self._rate = (0.0, 0.0)

    def update(self, stats: MasterStats) -> Tuple[float, float]:
        now = time.monotonic()
        ops = sum(m.ops_ok for m in stats.members if m.epoch == stats.epoch)
        nbytes = sum(m.tx_bytes for m in stats.members
                     if m.epoch == stats.epoch)
        with self._lock:
            last = self._last
            if last is None:
                self._last = (now, ops, nbytes)
            elif now - last[0] >= self._min_gap:
                dt = now - last[0]
                self._rate = (max(0, ops - last[1]) / dt,
                              max(0, nbytes - last[2]) / dt)
                self._last = (now, ops, nbytes)
            return self._rate


def view_json(stats: MasterStats, ops_per_s: float = 0.0,
              bytes_per_s: float = 0.0) -> Dict[str, Any]:
    """The JSON document of ``/stats.json``."""
    doc = stats.as_dict()
    doc["ops_per_s"] = ops_per_s          # summed over the current epoch's members
    doc["tx_bytes_per_s"] = bytes_per_s
    doc["flagged"] = [{"src": l.src, "dst": l.dst, "rx_rate": l.rx_rate,
                       "z": l.z} for l in stats.slow_links]
    doc["time"] = time.time()
    return doc


def _label(value: Any) -> str:
    text = str(value)
    return text.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def _num(value: float) -> str:
    if value != value:  # NaN
        return "NaN"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def view_prometheus(stats: MasterStats, ops_per_s: float = 0.0,
                    bytes_per_s: float = 0.0) -> str:
    """The Prometheus text (format 0.0.4) of ``/metrics``."""
    out: List[str] = []

    def family(name: str, kind: str, help_text: str,
               samples: List[Tuple[Dict[str, Any], float]],
               suffix: str = "") -> None:
        # Format 0.0.4 names a counter's HELP and TYPE with its full
        # sample name, "_total" included (OpenMetrics would not).
        full = name + suffix
        out.append("# HELP %s %s" % (full, help_text))
        out.append("# TYPE %s %s" % (full, kind))
        for labels, value in samples:
            lab = ",".join('%s="%s"' % (k, _label(v)) for k, v in labels.items())
            out.append("%s%s %s" % (full, "{%s}" % lab if lab else "",
                                    _num(value)))

    cur = [m for m in stats.members]
    ml = lambda m: {"rank": m.rank, "addr": m.addr, "epoch": m.epoch}  # noqa: E731
    ll = lambda l: {"src": l.src, "dst": l.dst, "epoch": l.epoch}  # noqa: E731
    family("pyccl_master_epoch", "gauge", "The master's current epoch.",
           [({}, stats.epoch)])
    family("pyccl_members", "gauge", "Members that reported stats.",
           [({}, len(cur))])
    family("pyccl_ops_per_second", "gauge",
           "Ops finished per second, summed over the epoch's members.",
           [({}, ops_per_s)])
    family("pyccl_tx_bytes_per_second", "gauge",
           "Bytes sent per second, summed over the epoch's members.",
           [({}, bytes_per_s)])
    family("pyccl_member_ops", "counter", "Ops a member finished successfully.",
           [(ml(m), m.ops_ok) for m in cur], "_total")
    family("pyccl_member_ops_failed", "counter", "Ops that failed at a member.",
           [(ml(m), m.ops_failed) for m in cur], "_total")
    family("pyccl_member_tx_bytes", "counter", "Bytes a member sent.",
           [(ml(m), m.tx_bytes) for m in cur], "_total")
    family("pyccl_member_rx_bytes", "counter", "Bytes a member received.",
           [(ml(m), m.rx_bytes) for m in cur], "_total")
    family("pyccl_member_report_age_seconds", "gauge",
           "Seconds since the member's last report.",
           [(ml(m), m.age) for m in cur])
    family("pyccl_link_rx_rate_bytes_per_second", "gauge",
           "Rate at which large frames arrive on the link (receiver's "
           "measure; 0 before the first sample).",
           [(ll(l), l.rx_rate) for l in stats.links])
    family("pyccl_link_rtt_seconds", "gauge",
           "Kernel's smoothed round trip of the link's connections.",
           [(ll(l), l.rtt) for l in stats.links])
    family("pyccl_link_z", "gauge",
           "Robust z-score of the link's rate among the epoch's links.",
           [(ll(l), l.z) for l in stats.links])
    family("pyccl_link_slow", "gauge", "1 if the master flags the link slow.",
           [(ll(l), int(l.slow)) for l in stats.links])
    family("pyccl_slow_flags_raised", "counter",
           "Times a link was newly flagged slow.",
           [({}, stats.slow_flags_raised)], "_total")
    family("pyccl_stats_reports", "counter", "STATS reports taken.",
           [({}, stats.reports)], "_total")
    family("pyccl_stats_reports_dropped", "counter",
           "STATS reports dropped by the rate limit.",
           [({}, stats.reports_dropped)], "_total")
    return "\n".join(out) + "\n"


class MetricsServer:
    """Serves ``master``'s view on ``host:port`` (port 0: any free one)
    until :meth:`close`."""

    def __init__(self, master: Any, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        rates = _Rates()
        self._master = master

        class Handler(BaseHTTPRequestHandler):
            server_version = "pyccl-master"

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                if path not in ("/", "/stats.json", "/metrics"):
                    self.send_error(404, "try /stats.json or /metrics")
                    return
                try:
                    stats = master.stats()
                except Exception as exc:  # a closed master
                    self.send_error(503, str(exc))
                    return
                ops, nbytes = rates.update(stats)
                if path == "/metrics":
                    body = view_prometheus(stats, ops, nbytes).encode()
                    ctype = PROMETHEUS_CONTENT_TYPE
                else:
                    body = json.dumps(view_json(stats, ops, nbytes)).encode()
                    ctype = "application/json"
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: Any) -> None:
                pass  # quiet: a scraper would fill the log

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        name="pyccl-metrics", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return "http://%s:%d" % (self.host, self.port)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5.0)

    def __enter__(self) -> "MetricsServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["MetricsServer", "view_json", "view_prometheus",
           "PROMETHEUS_CONTENT_TYPE"]
