"""Exit 1 with a clear message when a folder's file system has less free space than needed.

    python scripts/check_disk.py FOLDER GIB

Used by `make setup` before it creates the environment (standard library only: it runs before
the environment exists).
"""
from __future__ import annotations

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


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python scripts/check_disk.py FOLDER GIB", file=sys.stderr)
        return 2
    folder, needed = argv[0], float(argv[1])
    free = free_gib(folder)
    if free < needed:
        print(f"error: {free:.1f} GiB free on the disk of {folder}; setting up the environment "
              f"there needs about {needed:g} GiB (free some space, or set SETUP_GIB to what your "
              "torch build needs; SETUP_GIB=0 skips this check)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
