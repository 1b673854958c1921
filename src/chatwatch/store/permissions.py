"""The data directory is private: 0700, and chatwatch's files in it 0600.

It holds every chat (the SQLite database and its ``-wal``/``-shm``), the stored logs, the
JWT secret, the admin token and the multiprocess metrics. ``chatwatch serve`` sets the
process umask to 077 before it creates anything, so new files and directories are private
(workers inherit the umask), and ``secure_data_dir`` tightens what an earlier version left
readable. Permissions are only ever tightened (group and other bits cleared), never widened,
and only on paths this process owns; a shared sticky directory such as ``/tmp`` given as
the data directory is left alone, since changing it would break every other user of it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PRIVATE_UMASK", "Tightened", "private_umask", "secure_data_dir", "sqlite_files"]

PRIVATE_UMASK = 0o077
# The files chatwatch itself keeps in the data directory (the database's are added by name).
_FILES = ("secret", "admin_token")
_DIRS = ("prometheus",)  # the multiprocess metrics (one file per worker and metric kind)


def private_umask() -> int:
    """Make files this process creates from now on private (0600/0700); returns the old mask."""
    return os.umask(PRIVATE_UMASK)


def sqlite_files(database: Path) -> list[Path]:
    """The SQLite database file and the journal files SQLite keeps beside it."""
    return [
        database,
        *(database.with_name(database.name + s) for s in ("-wal", "-shm", "-journal")),
    ]


@dataclass
class Tightened:
    """What ``secure_data_dir`` did: the paths made private, and those it could not change."""

    changed: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def secure_data_dir(data_dir: Path, database: Path | None = None) -> Tightened:
    """Create ``data_dir`` (0700), or tighten it and chatwatch's files in it."""
    result = Tightened()
    if not data_dir.exists():
        data_dir.mkdir(mode=0o700, parents=True)
    _tighten(data_dir, result, skip_shared=True)
    files: list[Path] = [data_dir / name for name in _FILES]
    files += sqlite_files(database if database is not None else data_dir / "chatwatch.db")
    for directory in (data_dir / name for name in _DIRS):
        if directory.is_dir() and not directory.is_symlink():
            _tighten(directory, result)
            files += sorted(directory.iterdir())
    for path in files:
        _tighten(path, result)
    return result


def _tighten(path: Path, result: Tightened, *, skip_shared: bool = False) -> None:
    """Clear the group and other bits of ``path``, noting the outcome in ``result``."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode) or st.st_uid != os.geteuid():
        return
    if skip_shared and st.st_mode & stat.S_ISVTX:
        return
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o077:
        return
    try:
        os.chmod(path, mode & ~0o077)
    except OSError as err:  # a read-only file system, say: say so, but do not stop
        result.failed.append((path, err.strerror or str(err)))
    else:
        result.changed.append(path)
