"""Evaluation (layer 4): datasets, metrics, LaRA recorded-outcome judging and router replay,
router fitting, the batch runner, reports and plots.

Submodules are imported on use (``from ctxroute.eval.metrics import token_f1``) so that
importing the package stays cheap.
"""
from __future__ import annotations

__all__ = ["datasets", "fit", "judge", "lara", "metrics", "replay", "report", "runner"]
