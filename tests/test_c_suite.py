"""Runs the C test suite, so one pytest command covers both languages:
``make -C csrc test`` always, ``make -C csrc sanitize`` (AddressSanitizer
and UBSan) where the compiler can build and run sanitized programs."""
import functools
import os
import shutil
import signal
import subprocess
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")

pytestmark = [
    pytest.mark.timeout(700),
    pytest.mark.skipif(shutil.which("make") is None, reason="no make"),
]


def _make(target, timeout):
    """Runs ``make -C csrc target`` in its own process group, output to a
    file: the C tests fork ranks, and a rank orphaned by a failed test
    would keep a pipe open (and this test waiting) forever."""
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(["make", "-C", CSRC, target], stdout=log,
                                stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            try:  # the whole group: make, the tests, their forked ranks
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
        log.seek(0)
        output = log.read()
    assert not timed_out, "make %s ran over %ds:\n%s" % (
        target, timeout, output[-8000:])
    assert proc.returncode == 0, "make %s failed (exit %d):\n%s" % (
        target, proc.returncode, output[-8000:])


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
    _make("test", timeout=300)


def test_c_tests_under_sanitizers():
    if not _sanitizers_work():
        pytest.skip("the C compiler cannot build ASan/UBSan programs here")
    _make("sanitize", timeout=400)


@functools.lru_cache(maxsize=None)
def _builds(flags):
    cc = os.environ.get("CC", "cc") if "fuzzer" not in flags else "clang"
    if shutil.which(cc) is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        exe = os.path.join(tmp, "probe")
        with open(src, "w") as f:
            f.write("#include <stdint.h>\n#include <stddef.h>\n"
                    "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)"
                    "{ (void)d; (void)n; return 0; }\n"
                    if "fuzzer" in flags else "int main(void) { return 0; }\n")
        try:
            return subprocess.run([cc] + flags.split() + [src, "-o", exe],
                                  capture_output=True, timeout=60).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False


def test_c_tests_under_thread_sanitizer():
    if not _builds("-fsanitize=thread"):
        pytest.skip("the C compiler cannot build TSan programs here")
    _make("tsan", timeout=600)


def test_wire_and_session_short_fuzz():
    """Both libFuzzer harnesses (decoders; handshake + frame sequences),
    15 s each, under ASan and UBSan."""
    if not _builds("-fsanitize=fuzzer,address,undefined"):
        pytest.skip("clang with libFuzzer is not installed")
    os.environ["FUZZ_SECONDS"] = "15"
    _make("fuzz", timeout=300)
