"""Alignment inside candidate windows (`refine`) and mapping quality (`mapq`)."""
from dnaesa.align.types import Alignment

__all__ = ["Alignment"]
