"""Smoke tests of ``pyccl bench`` (not in tests/, so run them explicitly):

    python -m pytest benchmarks/test_bench_smoke.py -q
"""
import json
import subprocess
import sys

import pytest

from pyccl import cli
from pyccl.bench import orchestrate, summary, tables


def test_iteration_counts():
    assert orchestrate.iters_for(4) == 200
    assert orchestrate.iters_for(16 << 20) == 128
    assert orchestrate.iters_for(256 << 20) == 8
    assert orchestrate.iters_for(1 << 30) == 3
    assert orchestrate.warmup_for(200) == 5 and orchestrate.warmup_for(8) == 1


def test_formatting():
    assert tables.format_time(25e-6) == "25.0 us"
    assert tables.format_time(0.0123) == "12.30 ms"
    assert summary.bus_factor(4) == 1.5 and summary.bus_factor(1) == 0.0


def test_bad_arguments(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["bench", "--sizes", "6"])
    assert info.value.code == 2
    assert "f32" in capsys.readouterr().err


@pytest.mark.parametrize("gloo,extra", [(False, []), (True, []),
                                        (False, ["--barrier-each-op"])])
def test_small_run(tmp_path, gloo, extra):
    if gloo:
        pytest.importorskip("torch.distributed")
    path = tmp_path / "out.json"
    argv = ["bench", "--peers", "2", "--sizes", "4,64K", "--iters", "3",
            "--json", str(path)] + ([] if gloo else ["--no-gloo"]) + extra
    proc = subprocess.run([sys.executable, "-m", "pyccl"] + argv,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "N=2 peers" in proc.stdout
    record = json.loads(path.read_text())
    assert record["failure"] is None
    libraries = [r["library"] for r in record["results"]]
    assert libraries == (["pyccl", "gloo"] if gloo else ["pyccl"])
    for result in record["results"]:
        assert [row["size"] for row in result["rows"]] == [4, 64 << 10]
        assert all(len(ts) == 3 for row in result["rows"]
                   for ts in row["times_s"])
        assert result["memory_summary"]["size"] == 64 << 10


def test_torch_bench_rounds(tmp_path):
    """benchmarks/torch_bench.py: two rounds, CPU per op and the other
    processes' load in the record."""
    pytest.importorskip("torch.distributed")
    import os
    path = tmp_path / "torch.json"
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "torch_bench.py")
    proc = subprocess.run(
        [sys.executable, script, "--peers", "2", "--sizes", "4,64K",
         "--iters", "3", "--ddp-steps", "2", "--rounds", "2",
         "--json", str(path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "N=2 round 2" in proc.stdout and "cpu/op" in proc.stdout
    result = json.loads(path.read_text())["results"]["2"]
    for backend in ("pyccl", "gloo"):
        rounds = result["rounds"][backend]
        assert len(rounds) == 2
        assert all(r["cpu"]["65536"] > 0 and r["cpu"]["ddp"] > 0
                   for r in rounds)
        assert result["median"][backend]["ddp"] > 0
