"""The examples run as a user would run them, and say what they promise."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.timeout(300)
def test_elastic_training_example_survives_a_kill_and_a_join():
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "elastic_training.py"),
         "--steps", "80"], capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "killed one worker" in proc.stdout
    assert "a new worker joined" in proc.stdout
    assert "all workers hold identical weights: yes" in proc.stdout
