"""A plain (non-editable) install carries every subpackage: a wheel built
from this tree holds each directory of pyccl/ and stress/ that has an
__init__.py (pyccl.torch was once missing from `pip install .`)."""
import os
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.timeout(600)


def _packages():
    found = set()
    for top in ("pyccl", "stress"):
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, top)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            if "__init__.py" in filenames:
                found.add(os.path.relpath(dirpath, ROOT).replace(os.sep, "/"))
    return found


def test_wheel_holds_every_package(tmp_path):
    rc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps",
         "-q", "-w", str(tmp_path), ROOT],
        capture_output=True, text=True, timeout=540)
    assert rc.returncode == 0, rc.stderr[-3000:]
    wheels = [f for f in os.listdir(tmp_path) if f.endswith(".whl")]
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(os.path.join(tmp_path, wheels[0])) as z:
        names = z.namelist()
    inits = {n[:-len("/__init__.py")] for n in names if n.endswith("/__init__.py")}
    missing = _packages() - inits
    assert not missing, "not in the wheel: %s" % sorted(missing)
    assert any(n.startswith("pyccl/_ccl") for n in names), "no extension"
