"""Engines run the per-read stage (refine + MAPQ) over a batch: in-process or in worker processes."""
from dnaesa.align.place import place_read
from dnaesa.engine.local import LocalEngine

__all__ = ["LocalEngine", "place_read"]
