"""Reading a configuration file that may be hostile or broken: only a regular file, at most
MAX_BYTES, within READ_TIMEOUT. A FIFO would block the reading thread until a writer
appears (for ever, wedging every later reload), /dev/zero never ends, a directory is no text."""

from __future__ import annotations

import errno
import os
import stat
import time

# Far larger than any configuration (the shipped one is a few KiB), far smaller than memory.
MAX_BYTES = 16 * 1024 * 1024
# A local file reads in microseconds; a hung network filesystem gets this long between reads.
READ_TIMEOUT = 5.0
_CHUNK = 1024 * 1024

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class FileReadError(Exception):
    """Why a file could not be read, as one short phrase for a `cannot read` message."""


def read_bounded(path: str, max_bytes: int = MAX_BYTES, timeout: float = READ_TIMEOUT) -> bytes:
    """The contents of `path`, a regular file (a symlink to one is fine) of at most
    `max_bytes`; else FileReadError."""
    try:
        # Checked before opening: opening some devices has effects (a tape rewinds).
        _check_regular(os.stat(path).st_mode)
        # O_NONBLOCK: should the path be swapped for a FIFO after the check, the open still
        # returns at once instead of waiting for a writer; fstat below then refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise FileReadError(_reason(exc)) from None
    try:
        _check_regular(os.fstat(fd).st_mode)
        deadline = time.monotonic() + timeout
        chunks: list[bytes] = []
        size = 0
        while True:
            if time.monotonic() > deadline:
                raise FileReadError(f"reading took longer than {timeout:g}s")
            chunk = os.read(fd, min(_CHUNK, max_bytes + 1 - size))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise FileReadError(f"larger than {max_bytes // (1024 * 1024)} MiB")
    except OSError as exc:
        raise FileReadError(_reason(exc)) from None
    finally:
        os.close(fd)


def _check_regular(mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise FileReadError(os.strerror(errno.EISDIR))  # the system's own words, as before
    for test, kind in _KINDS:
        if test(mode):
            raise FileReadError(f"{kind}, not a regular file")
    if not stat.S_ISREG(mode):
        raise FileReadError("not a regular file")


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
