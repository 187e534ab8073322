"""The one compiled part of dnaesa: the flat store's integer scan (`dnaesa/store/_scan.c`, plain C
called through ctypes). Optional: without a C compiler the install goes on and the scan runs in
numpy (same results, slower). Everything else is in pyproject.toml."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("dnaesa.store._scan", ["dnaesa/store/_scan.c"], optional=True,
                             extra_compile_args=["-O3", "-ffp-contract=off"])])
