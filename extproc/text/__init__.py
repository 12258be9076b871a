"""Text utilities shared by the detectors."""

from extproc.text.normalize import Normalized, normalize

__all__ = ["Normalized", "normalize"]
