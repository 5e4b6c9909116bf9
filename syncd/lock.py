"""The ledger lock: one syncd process per ledger, enforced with ``fcntl.flock`` on a file next to it.

The lock file is ``<ledger>.lock`` and holds the holder's pid, so that a refused second daemon can say who
holds it. The kernel drops a flock when its holder dies, even by SIGKILL, so a crash never leaves a stale
lock behind; the file itself stays (removing it would let a third process lock a fresh inode while a second
still holds the old one).
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from syncd.errors import LedgerError, LockedError

_PROBE_RETRIES = 5
_PROBE_PAUSE = 0.02


def lock_path_for(ledger_path: Path) -> Path:
    """Where the lock of a ledger lives."""
    return ledger_path.with_name(ledger_path.name + ".lock")


class LedgerLock:
    """An exclusive, non-blocking lock on a ledger; use it as a context manager or acquire/release."""

    def __init__(self, ledger_path: Path) -> None:
        self.ledger_path = Path(ledger_path)
        self.path = lock_path_for(self.ledger_path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> LedgerLock:
        """Take the lock or raise LockedError naming the holder's pid; never waits."""
        if self._fd is not None:
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise LedgerError(f"cannot create the ledger lock {self.path}: {exc.strerror or exc}") from None
        try:
            self._flock(fd)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder is not None else "a process that is still starting"
            raise LockedError(
                f"ledger {self.ledger_path} is already in use by another syncd ({who}); "
                f"stop it first, or give this one another ledger path"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise LedgerError(f"cannot lock {self.path}: {exc.strerror or exc}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def _flock(self, fd: int) -> None:
        for _ in range(_PROBE_RETRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if _alive(_read_pid(fd)):
                    raise
                # No live holder: most likely holder_pid() probing with a shared lock for an instant.
                time.sleep(_PROBE_PAUSE)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self) -> None:
        """Give the lock up (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> LedgerLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def holder_pid(ledger_path: Path) -> int | None:
    """The pid of the process holding a ledger's lock, or None when nobody holds it (or it is unknown)."""
    try:
        fd = os.open(lock_path_for(Path(ledger_path)), os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd)
        # We got it, so nobody holds it: a pid left in the file is a dead holder's.
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
