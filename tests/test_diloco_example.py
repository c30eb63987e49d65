"""examples/diloco_lm.py --smoke runs as a user would run it: Streaming
DiLoCo with 4-bit outer gradients and DiLoCo with a worker that SIGKILLs
itself and a joiner, each worker's global state identical after every
outer step."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.timeout(300)
def test_diloco_lm_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "diloco_lm.py"),
         "--smoke", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=280, cwd=ROOT)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "globals identical: NO" not in out
    assert ("every worker's global parameters identical after every outer "
            "step: yes") in out
    table = (tmp_path / "diloco_results.md").read_text()
    assert "Streaming DiLoCo" in table
    assert "kill at" in table
    assert "SIGKILLed itself" in out and "joiner released" in out
