"""Open input files only when they are regular files, and read them within a bound.

A name in a dataset directory (or an allow-list path) can be a directory, a FIFO, a device,
a socket, a symbolic link to nothing or a symbolic-link loop. ``Path.is_file()`` answers
``False`` for all of these, which made a table silently absent; opening a FIFO blocks until
a writer comes, and reading ``/dev/zero`` never ends. :func:`regular_file_problem` names
what the path is instead, and :func:`open_regular` opens a file without blocking and checks
the opened descriptor itself, so a FIFO swapped in after the check is not waited on either.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import stat
from pathlib import Path
from typing import BinaryIO

from linker.errors import InputError

__all__ = ["file_sha256", "open_regular", "read_bounded", "regular_file_problem"]

logger = logging.getLogger(__name__)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def regular_file_problem(path: Path) -> str | None:
    """What keeps ``path`` from being read as a regular file, or ``None`` if nothing does.

    Parameters
    ----------
    path : Path
        The file; a symbolic link is followed (a link to a regular file is fine).

    Returns
    -------
    str or None
        E.g. ``"a FIFO (named pipe), not a regular file"``,
        ``"symbolic link to a missing file (gone.csv)"`` or ``"symbolic link loop"``.
        A path that does not exist at all is left to ``open`` to report. Nothing is
        opened: ``stat`` only.

    Examples
    --------
    >>> import tempfile
    >>> regular_file_problem(Path(tempfile.mkdtemp()))
    'a directory, not a regular file'
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return f"symbolic link to a missing file ({os.readlink(path)})"
        return None  # opening it says so, in the system's words
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISREG(info.st_mode):
        return None
    via = f" (symbolic link to {os.readlink(path)})" if os.path.islink(path) else ""
    return f"{_kind(info.st_mode)}{via}, not a regular file"


def open_regular(path: Path, what: str = "file") -> BinaryIO:
    """Open ``path`` for binary reading if, and only if, it is a regular file.

    Parameters
    ----------
    path : Path
        The file.
    what : str
        What the file is, for the message (``"table file"``, ``"allow-list"``).

    Returns
    -------
    BinaryIO
        An open, blocking, buffered reader.

    Raises
    ------
    InputError
        ``<path>: <what it is>; <what> must be a regular file``, or
        ``<path>: cannot read <what> (<system reason>)``.

    Notes
    -----
    The file is opened with ``O_NONBLOCK`` (so a FIFO does not block), checked with
    ``fstat`` on the descriptor itself, and switched back to blocking reads.
    """
    problem = regular_file_problem(path)
    if problem is not None:
        raise InputError(f"{path}: {problem}; {what} must be a regular file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what} ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(
                f"{path}: {_kind(info.st_mode)}, not a regular file; {what} must be a regular file"
            )
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: Path, limit: int, what: str = "file") -> bytes:
    """Read a whole regular file of at most ``limit`` bytes.

    Parameters
    ----------
    path : Path
        The file.
    limit : int
        The largest size accepted, in bytes.
    what : str
        What the file is, for the message.

    Returns
    -------
    bytes
        The file's content.

    Raises
    ------
    InputError
        If the file is not a regular file, cannot be read, or is larger than ``limit``
        (checked before reading, and again while reading, for a file that grows).
    """
    with open_regular(path, what) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise InputError(f"{path}: {what} is larger than {_mib(limit)} ({size:,} bytes)")
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise InputError(f"{path}: cannot read {what} ({exc.strerror})") from None
    if len(data) > limit:
        raise InputError(f"{path}: {what} is larger than {_mib(limit)}")
    return data


def _mib(n_bytes: int) -> str:
    return f"{n_bytes / (1 << 20):g} MiB"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB blocks (manifests record it).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x"
    >>> _ = p.write_bytes(b"abc")
    >>> file_sha256(p)[:16]
    'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
