"""Build stub: the extension is described by bindings/build_ccl.py (cffi API
mode); all metadata lives in pyproject.toml."""
from setuptools import setup

setup(cffi_modules=["bindings/build_ccl.py:ffibuilder"])
