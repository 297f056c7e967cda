"""Atomic file writing: a file is either complete or absent, never half written."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)
    return path


def atomic_write_csv(frame: pd.DataFrame, path: str | Path, **to_csv_kwargs) -> Path:
    """``frame.to_csv(path, index=False)`` through a temporary file and a rename."""
    to_csv_kwargs.setdefault("index", False)
    return atomic_write_text(path, frame.to_csv(**to_csv_kwargs))
