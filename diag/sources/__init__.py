"""Readers of recordings. Every reader returns a list of :class:`~diag.sources.base.Recording`."""

from diag.sources.base import Recording

__all__ = ["Recording"]
