"""What every text encoder shares: the error for one that cannot be used."""

from __future__ import annotations


class TextEncoderUnavailable(RuntimeError):
    """The text encoder cannot be used as named (not installed, weights that fail their checksum, no such folder)."""
