"""Runs the C test suite, so one pytest command covers both languages:
``make -C csrc test`` always, ``make -C csrc sanitize`` (AddressSanitizer
and UBSan) where the compiler can build and run sanitized programs."""
import functools
import os
import shutil
import subprocess
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(shutil.which("make") is None, reason="no make"),
]


def _make(target, timeout):
    proc = subprocess.run(["make", "-C", CSRC, target], capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, "make %s failed:\n%s\n%s" % (
        target, proc.stdout[-6000:], proc.stderr[-6000:])


@functools.lru_cache(maxsize=None)
def _sanitizers_work():
    cc = os.environ.get("CC", "cc")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        exe = os.path.join(tmp, "probe")
        with open(src, "w") as f:
            f.write("int main(void) { return 0; }\n")
        try:
            build = subprocess.run(
                [cc, "-fsanitize=address,undefined", src, "-o", exe],
                capture_output=True, timeout=60)
            return build.returncode == 0 and subprocess.run(
                [exe], capture_output=True, timeout=60).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False


def test_c_tests():
    _make("test", timeout=800)


def test_c_tests_under_sanitizers():
    if not _sanitizers_work():
        pytest.skip("the C compiler cannot build ASan/UBSan programs here")
    _make("sanitize", timeout=800)
