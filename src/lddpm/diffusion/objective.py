"""Moved to `lddpm.losses.objective` (the losses' one home); this old import path re-exports it."""

from lddpm.losses.objective import ChainPair, Objective

__all__ = ["ChainPair", "Objective"]
