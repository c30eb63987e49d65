"""Builds the ``pyccl._ccl`` extension with cffi in API mode.

The C core (csrc/src/*.c) is compiled straight into the extension, against
the real public header, so every constant and struct layout comes from the
compiler.  The declarations Python sees are in ``ccl_cdef.h`` beside this
file, kept by hand.

Used two ways:
  * by setuptools (``pip install .``): ``setup.py`` names
    ``bindings/build_ccl.py:ffibuilder`` in ``cffi_modules``;
  * in a checkout: ``python bindings/build_ccl.py`` builds the extension and
    copies it into ``pyccl/`` so ``import pyccl`` works from the tree.
"""
import os
import shutil
import sys
from glob import glob

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _path(*parts):
    """A path under the repository root: relative when setuptools builds
    from the root, so its build directories stay tidy; absolute otherwise
    (``ffibuilder.compile`` changes into its temporary directory)."""
    full = os.path.join(ROOT, *parts)
    if __name__ == "__main__":
        return full
    try:
        if os.path.samefile(os.getcwd(), ROOT):
            return os.path.relpath(full, ROOT)
    except OSError:
        pass
    return full


def _read_cdef():
    with open(os.path.join(HERE, "ccl_cdef.h"), encoding="utf-8") as f:
        return f.read()


ffibuilder = FFI()
ffibuilder.cdef(_read_cdef())
ffibuilder.set_source(
    "pyccl._ccl",
    '#include "ccl.h"',
    sources=sorted(_path("csrc", "src", os.path.basename(p))
                   for p in glob(os.path.join(ROOT, "csrc", "src", "*.c"))),
    depends=sorted(_path("csrc", "src", os.path.basename(p))
                   for p in glob(os.path.join(ROOT, "csrc", "src", "*.h")))
    + [_path("csrc", "include", "ccl.h"), _path("bindings", "ccl_cdef.h")],
    include_dirs=[_path("csrc", "include"), _path("csrc", "src")],
    # -ffp-contract=off: no fused multiply-add, so decoded and reduced
    # floats are the same bits on every rank (csrc/src/quant.c).
    # -g: a hang inside the core can be read with gdb (pyccl stress does
    # so for a hung peer); it costs nothing at run time.
    extra_compile_args=["-O2", "-g", "-std=c99", "-D_GNU_SOURCE",
                        "-ffp-contract=off", "-pthread"],
    # dl: libcrypto is loaded at run time for encrypt=True (csrc/src/aead.c),
    # so installing needs no OpenSSL headers and no OpenSSL at all.
    libraries=["pthread", "m", "dl"],
)


def build_in_tree(verbose=False):
    """Compiles the extension under build/cffi and copies it into pyccl/.
    Returns the path of the installed shared object."""
    tmpdir = os.path.join(ROOT, "build", "cffi")
    built = ffibuilder.compile(tmpdir=tmpdir, verbose=verbose)
    dest = os.path.join(ROOT, "pyccl", os.path.basename(built))
    # An older build under another suffix (an editable install makes
    # _ccl.abi3.so) could be imported instead of this one: remove it.
    for old in glob(os.path.join(ROOT, "pyccl", "_ccl*.so")):
        os.remove(old)
    shutil.copyfile(built, dest)
    return dest


if __name__ == "__main__":
    print(build_in_tree(verbose="-v" in sys.argv[1:]))
