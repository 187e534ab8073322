"""The compiled parts of dnaesa: the flat store's integer scan (`dnaesa/store/_scan.c`), the count
sketch (`dnaesa/model/_sketch.c`) and the seed table's sampling (`dnaesa/store/_seeds.c`), plain C called through ctypes (`dnaesa/compiled.py`). Optional:
without a C compiler the install goes on and numpy runs instead (same results, slower). Everything
else is in pyproject.toml."""
from setuptools import Extension, setup

FLAGS = ["-O3", "-ffp-contract=off"]  # no FMA contraction: the kernels' float32 steps are numpy's

setup(ext_modules=[Extension("dnaesa.store._scan", ["dnaesa/store/_scan.c"], optional=True, extra_compile_args=FLAGS),
                   Extension("dnaesa.model._sketch", ["dnaesa/model/_sketch.c"], optional=True, extra_compile_args=FLAGS),
                   Extension("dnaesa.store._seeds", ["dnaesa/store/_seeds.c"], optional=True, extra_compile_args=FLAGS)])
