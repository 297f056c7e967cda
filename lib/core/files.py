"""Atomic file writing: a file is either complete or absent, never half written."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pandas as pd


@contextmanager
def atomic_path(path: str | Path):
    """Yield a unique temporary path beside ``path``; on success rename it to ``path``, on
    error remove it. Concurrent writers never share a temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                       suffix=".partial")
    os.fchmod(handle, 0o666 & ~current_umask())  # mkstemp's 0600 would hide results from the group
    os.close(handle)
    try:
        yield Path(partial)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (/proc), else by the
    usual set-and-restore."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as partial:
        partial.write_text(text)
    return Path(path)


def atomic_write_csv(frame: pd.DataFrame, path: str | Path, **to_csv_kwargs) -> Path:
    """``frame.to_csv(path, index=False)`` through a temporary file and a rename."""
    to_csv_kwargs.setdefault("index", False)
    return atomic_write_text(path, frame.to_csv(**to_csv_kwargs))
