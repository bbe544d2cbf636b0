"""Advisory locks on outputs: one linker process writes a takedown list or a run directory
at a time.

:class:`OutputLock` takes an exclusive ``fcntl.flock`` on a lock file and writes who holds
it (pid, host, start time, command line) into that file, so a second process can name the
holder in its one-line error. The kernel drops the lock when its holder exits, however it
exits (``kill -9`` included): a stale lock file never blocks a later run. The lock file is
left in place (removing it would let two processes lock two different files of one name).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import socket
import sys
from pathlib import Path
from types import TracebackType

from linker.errors import OutputBusy, OutputError

__all__ = ["OutputLock"]

logger = logging.getLogger(__name__)

_MAX_COMMAND = 300
"""Characters of the holder's command line kept in the lock file."""


class OutputLock:
    """An exclusive, non-blocking lock on ``path``, for the output named ``what``.

    Parameters
    ----------
    path : Path
        The lock file (created, with its directory, when missing).
    what : str
        The output it protects, for messages (``takedown.csv``, a run directory).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> lock_file = pathlib.Path(tempfile.mkdtemp()) / "lock"
    >>> with OutputLock(lock_file, "out.csv"):
    ...     try:
    ...         OutputLock(lock_file, "out.csv").acquire()
    ...     except OutputBusy as exc:
    ...         print(str(exc).split(" (")[0])
    out.csv: another linker process is writing it
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"OutputLock({str(self.path)!r})"

    def acquire(self) -> OutputLock:
        """Take the lock, or raise at once.

        Raises
        ------
        OutputBusy
            When another process holds it; the message names that process.
        OutputError
            When the lock file cannot be created (the location is not writable).
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise OutputError(
                f"{self.what}: cannot create the lock file {self.path} "
                f"({exc.strerror or type(exc).__name__})"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read(fd))
            os.close(fd)
            raise OutputBusy(
                f"{self.what}: another linker process is writing it ({holder}; lock "
                f"{self.path}); wait for it to finish, or stop it"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise OutputError(
                f"{self.what}: cannot lock {self.path} ({exc.strerror or type(exc).__name__})"
            ) from None
        self._fd = fd
        _write(fd, _holder())
        logger.debug("locked %s", self.path)
        return self

    def release(self) -> None:
        """Drop the lock (and the holder's description); nothing when not held."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the descriptor releases the flock
        self._fd = None
        logger.debug("unlocked %s", self.path)

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _holder() -> dict[str, object]:
    command = " ".join(sys.argv)
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command[:_MAX_COMMAND],
    }


def _write(fd: int, holder: dict[str, object]) -> None:
    data = (json.dumps(holder, sort_keys=True) + "\n").encode("utf-8")
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)


def _read(fd: int) -> dict[str, object]:
    try:
        raw = os.pread(fd, 4096, 0)
        data = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict[str, object]) -> str:
    """The holder as one line: ``pid 123 on host since ...: linker run ...``."""
    if not holder.get("pid"):
        return "holder unknown"
    text = f"pid {holder['pid']} on {holder.get('host', '?')} since {holder.get('since', '?')}"
    command = str(holder.get("command", "")).replace("\n", " ").replace("\r", " ")
    return f"{text}: {command}" if command else text
