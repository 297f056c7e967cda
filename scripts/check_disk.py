"""Exit 1 with a clear message when a folder's file system has less free space than needed.

    python scripts/check_disk.py FOLDER GIB

Used by `make setup` before it creates the environment (standard library only: it runs before
the environment exists).
"""
from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path


def free_gib(folder: str) -> float:
    """Free space, in GiB, on the file system that holds ``folder`` (or would hold it: a folder
    not made yet is measured at its nearest existing parent)."""
    path = Path(folder).absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free / 2**30


def number_of_gib(text: str) -> float | None:
    """``text`` as a finite number >= 0, else None ("abc", "-1", "nan", "inf")."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python scripts/check_disk.py FOLDER GIB", file=sys.stderr)
        return 2
    folder, needed = argv[0], number_of_gib(argv[1])
    if needed is None:
        print(f"error: SETUP_GIB={argv[1]}: give the GiB the environment needs as a number "
              f">= 0 (e.g. SETUP_GIB=8; SETUP_GIB=0 skips this check)", file=sys.stderr)
        return 2
    free = free_gib(folder)
    if free < needed:
        print(f"error: {free:.1f} GiB free on the disk of {folder}; setting up the environment "
              f"there needs about {needed:g} GiB (free some space, or set SETUP_GIB to what your "
              "torch build needs; SETUP_GIB=0 skips this check)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
