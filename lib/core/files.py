"""Atomic file writing: a file is either complete or absent, never half written; a set of
files is the old set or the new one, never a mix. And the free-space check made before a big
write starts."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pandas as pd


class NotEnoughSpaceError(OSError):
    """The disk of a folder to write has less free space than the writing needs (the message
    names the folder and both sizes)."""


def check_free_space(folder: str | Path, needed_bytes: float, what: str, hint: str = "") -> None:
    """NotEnoughSpaceError "<folder>: <what> needs about X GB and its disk has Y GB free" (and
    ``hint``) when the disk that holds ``folder`` (or would: a folder not made yet is measured
    at its nearest existing parent) has less free space than ``needed_bytes``."""
    folder = Path(folder).absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if free < needed_bytes:
        raise NotEnoughSpaceError(f"{folder}: {what} needs about {needed_bytes / 1e9:.1f} GB "
                                  f"and its disk has {free / 1e9:.1f} GB free"
                                  + (f"; {hint}" if hint else ""))


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


VERSIONS = "versions"  # write_file_set: folder/versions/<version>/ holds each set's files
CURRENT = "current"  # folder/versions/current: a link to the version in force


def write_file_set(folder: str | Path, texts: dict[str, str], retire: tuple[str, ...] = ()) -> Path:
    """Write the files ``texts`` ({name: text}) into ``folder`` as one set: a reader of
    folder/<name> finds every file of the old set or every file of the new one, never a mix,
    also when the writing fails (a full disk) or is killed half way.

    Each set lives in its own folder, folder/versions/<version>/; folder/versions/current is a
    symbolic link to the version in force and each folder/<name> a symbolic link to
    versions/current/<name>, so readers keep their paths. The new set is written and fsynced
    into a fresh version folder, and one os.replace of versions/current puts all of it in
    force; the old version is removed after. On any error the fresh folder is removed and the
    old set is left as it was. (A reader that opens one file before the swap and another after
    it still gets one of each; one that needs a matched pair reads both through
    ``folder/versions/current`` resolved once.)

    retire: names of files that belong to the set but are written later, by another step
    (05's pair and 06's explanations of it): the old set's go with it, and the new set has none
    until that step writes them. A file of the set found as a plain file (written by
    atomic_path, or before this layout) is first moved into the version in force (a hard link,
    then a link in its place, so it never changes for a reader). Files of ``folder`` named
    neither in ``texts`` nor in ``retire`` are not touched. One writer at a time per folder; a
    version folder that a killed write left behind is not in force and may be deleted.
    Returns ``folder``."""
    folder = Path(folder)
    names = [*texts, *retire]
    for name in names:
        path = folder / name
        if os.path.lexists(path) and not (path.is_symlink() or path.is_file()):
            raise IsADirectoryError(f"{path} is not a file: move it away to write {name} there")
    versions = folder / VERSIONS
    versions.mkdir(parents=True, exist_ok=True)
    current = versions / CURRENT
    in_force = os.readlink(current) if current.is_symlink() else None
    fresh = Path(tempfile.mkdtemp(dir=versions, prefix=time.strftime("%Y%m%d-%H%M%S-")))
    try:
        os.chmod(fresh, 0o777 & ~current_umask())  # mkdtemp's 0700 would hide results
        for name, text in texts.items():
            try:
                with open(fresh / name, "w", encoding="utf-8") as handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as error:
                raise OSError(error.errno, f"{error.strerror} (the previous files are kept)",
                              str(folder / name)) from error
        _fsync_folder(fresh)
        for name in names:  # plain files of the old set join the version in force
            in_force = _adopt(folder, name, in_force, written=name in texts)
        _fsync_folder(folder)
        _replace_link(current, fresh.name)
    except BaseException:
        if not (current.is_symlink() and os.readlink(current) == fresh.name):
            shutil.rmtree(fresh, ignore_errors=True)
        raise
    _fsync_folder(versions)
    for name in retire:  # the new set has none of them yet: no dangling links left behind
        if (folder / name).is_symlink() and not (folder / name).exists():
            (folder / name).unlink()
    if in_force:
        shutil.rmtree(versions / in_force, ignore_errors=True)
    return folder


def _adopt(folder: Path, name: str, in_force: str | None, written: bool) -> str | None:
    """Make folder/<name> the link to versions/current/<name> (if it is written or is a file
    now); a file there first joins the version in force, made if there is none. Returns the
    name of the version in force."""
    path, target = folder / name, f"{VERSIONS}/{CURRENT}/{name}"
    if path.is_symlink() and os.readlink(path) == target:
        return in_force
    if path.is_file():
        if in_force is None:
            in_force = Path(tempfile.mkdtemp(dir=folder / VERSIONS, prefix="adopted-")).name
            os.chmod(folder / VERSIONS / in_force, 0o777 & ~current_umask())
            _replace_link(folder / VERSIONS / CURRENT, in_force)
        partial = folder / VERSIONS / in_force / f".{name}.{uuid.uuid4().hex}.partial"
        try:
            try:
                os.link(path, partial)
            except OSError:  # no hard links on this filesystem, or a link to another one
                shutil.copy2(path, partial)
            os.replace(partial, folder / VERSIONS / in_force / name)
        finally:
            if os.path.lexists(partial):
                os.unlink(partial)
    elif not written:
        return in_force
    _replace_link(path, target)
    return in_force


def _replace_link(link: Path, target: str) -> None:
    """Make ``link`` a symbolic link to ``target`` in one os.replace."""
    partial = link.with_name(f".{link.name}.{uuid.uuid4().hex}.link")
    os.symlink(target, partial)
    try:
        os.replace(partial, link)
    finally:
        if os.path.lexists(partial):
            os.unlink(partial)


def _fsync_folder(folder: Path) -> None:
    """fsync a folder, so that the names created or replaced in it survive a power cut."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
