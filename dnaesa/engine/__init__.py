"""Engines run the per-read stage (refine + MAPQ) over a batch: in-process or in worker processes."""
from dnaesa.engine.local import LocalEngine, place_read

__all__ = ["LocalEngine", "place_read"]
