"""The layer checker (.ci/check_layers): the real tree against csrc/LAYERS,
and the checker itself on small synthetic trees, so that it is shown to
catch each thing it claims to (an upward call or include, a cycle, a file
in no layer, a long file without a reason) and to pass a clean tree."""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKER = os.path.join(ROOT, ".ci", "check_layers")

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        shutil.which(os.environ.get("CC", "cc").split()[0]) is None,
        reason="no C compiler"),
    pytest.mark.skipif(shutil.which(os.environ.get("NM", "nm").split()[0]) is None,
                       reason="no nm"),
]


def run_checker(*args):
    return subprocess.run([sys.executable, CHECKER, *args],
                          capture_output=True, text=True, timeout=240)


def test_tree_follows_layers():
    r = run_checker()
    assert r.returncode == 0, r.stdout + r.stderr


def make_tree(tmp_path, layers, files):
    """A csrc-like tree: src/ with the given files, an empty include/, and
    LAYERS; returns the csrc path."""
    csrc = tmp_path / "csrc"
    (csrc / "src").mkdir(parents=True)
    (csrc / "include").mkdir()
    for name, text in files.items():
        (csrc / "src" / name).write_text(textwrap.dedent(text))
    (csrc / "LAYERS").write_text(textwrap.dedent(layers))
    return str(csrc)


# Two layers.  base: util.c.  top: api.c, and ping.c/pong.c, which call
# each other.  Optionally util.c calls up into api.c; in every tree util.c
# reaches api.c through a function pointer that api.c registers, which is
# the allowed way up and must not be reported.
LAYERS = """\
    # lowest first
    base: util.c util.h
    top: api.c api.h ping.c pong.c   # the public side
"""

UTIL_H = """\
    #ifndef UTIL_H
    #define UTIL_H
    int util_add(int a, int b);
    void util_set_hook(int (*hook)(int));
    int util_run_hook(int x);
    #endif
"""

UTIL_C = """\
    #include "util.h"
    static int (*util_hook)(int);
    int util_add(int a, int b) { return a + b; }
    void util_set_hook(int (*hook)(int)) { util_hook = hook; }
    int util_run_hook(int x) { return util_hook ? util_hook(x) : x; }
"""

API_H = """\
    #ifndef API_H
    #define API_H
    int api_double(int x);
    #endif
"""

API_C = """\
    #include "api.h"
    #include "util.h"
    static int api_hook(int x) { return api_double(x); }
    int api_double(int x)
    {
        util_set_hook(api_hook);
        return util_add(x, x);
    }
"""


def clean_files():
    return {"util.h": UTIL_H, "util.c": UTIL_C, "api.h": API_H, "api.c": API_C,
            "ping.c": "int ping(int n) { return n; }\n",
            "pong.c": "int ping(int n);\nint pong(int n) { return ping(n); }\n"}


def test_clean_tree_passes(tmp_path):
    r = run_checker("--csrc", make_tree(tmp_path, LAYERS, clean_files()))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "check_layers: ok" in r.stdout


def test_upward_call_and_cycle_are_both_reported(tmp_path):
    files = clean_files()
    # The upward call: util.c (base) calls api_double (top).
    files["util.c"] = UTIL_C + "int api_double(int x);\n" \
        "int util_twice(int x) { return api_double(x); }\n"
    # The cycle, inside one layer: ping.c and pong.c call each other.
    files["ping.c"] = "int pong(int n);\n" \
        "int ping(int n) { return n ? pong(n - 1) : 0; }\n"
    r = run_checker("--csrc", make_tree(tmp_path, LAYERS, files))
    out = r.stdout
    assert r.returncode == 1, out + r.stderr
    assert "util.c -> api.c: api_double (layer base below layer top)" in out
    assert "cycle among 2 files: ping.c pong.c" in out
    assert "ping.c -> pong.c: pong" in out
    assert "pong.c -> ping.c: ping" in out
    # util.c -> api.c -> util.c is a cycle too, and the only others.
    assert "cycle among 2 files: api.c util.c" in out
    assert out.count("cycle among") == 2
    # The hook (a function pointer) is not an upward call.
    assert "api_hook" not in out
    assert "problem(s): 0 in files and layers, 1 upward uses, 2 cycles" in out


def test_upward_include_is_reported(tmp_path):
    files = clean_files()
    files["util.c"] = '#include "api.h"\n' + UTIL_C
    r = run_checker("--csrc", make_tree(tmp_path, LAYERS, files))
    assert r.returncode == 1
    assert "util.c -> api.h: #include (layer base below layer top)" in r.stdout
    # Including api.h counts as using api.c: a loop with api.c -> util.c.
    assert "cycle among 2 files: api.c util.c" in r.stdout


def test_private_header_makes_no_false_cycle(tmp_path):
    # mod_impl.h (no .c of its own) includes mod.h; mod.c includes both.
    files = clean_files()
    files["mod.h"] = "int mod_f(void);\n"
    files["mod_impl.h"] = '#include "mod.h"\nint mod_g(void);\n'
    files["mod.c"] = '#include "mod_impl.h"\nint mod_f(void) { return 1; }\n'
    layers = LAYERS + "    mod: mod.c mod.h mod_impl.h\n"
    r = run_checker("--csrc", make_tree(tmp_path, layers, files))
    assert r.returncode == 0, r.stdout + r.stderr


def test_files_outside_the_layers_are_reported(tmp_path):
    files = clean_files()
    files["stray.c"] = "int stray(void) { return 0; }\n"
    layers = LAYERS + "    extra: gone.c ping.c\n"
    r = run_checker("--csrc", make_tree(tmp_path, layers, files))
    assert r.returncode == 1
    assert "stray.c is in no layer" in r.stdout
    assert "gone.c is listed (layer extra) but not in" in r.stdout
    assert "ping.c is in two layers: top and extra" in r.stdout


def test_long_file_needs_a_reason(tmp_path):
    body = "".join("int f%d(void) { return %d; }\n" % (i, i) for i in range(601))
    files = clean_files()
    files["ping.c"] = "/* ping.c - many small functions. */\n" + body
    r = run_checker("--csrc", make_tree(tmp_path, LAYERS, files))
    assert r.returncode == 1
    assert "ping.c: 602 lines, and no comment line" in r.stdout
    files["ping.c"] = ("/* ping.c - many small functions.\n"
                       " * over 600 lines: generated table, one function a line. */\n"
                       + body)
    r = run_checker("--csrc", make_tree(tmp_path / "again", LAYERS, files))
    assert r.returncode == 0, r.stdout + r.stderr


def test_bad_layers_file_cannot_check(tmp_path):
    csrc = make_tree(tmp_path, "base util.c\n", clean_files())
    r = run_checker("--csrc", csrc)
    assert r.returncode == 2
    assert "expected 'layer: file ...'" in r.stderr


def test_file_that_does_not_compile_cannot_check(tmp_path):
    files = clean_files()
    files["pong.c"] = "int pong(void) { return }\n"
    r = run_checker("--csrc", make_tree(tmp_path, LAYERS, files))
    assert r.returncode == 2
    assert "pong.c does not compile" in r.stderr
