"""The evidence journal (`--storage.path`): every verdict change and vantage change as one JSON
object per line, appended by a writer thread so the probe loop never waits for the disk, kept
within `--storage.retention.size` by rotating segment files, and read back at start and by
/api/v1/changes. The record format is documented in the README ("The evidence journal")."""

from __future__ import annotations

import collections
import datetime
import json
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from exporter.result import Result

log = logging.getLogger(__name__)

DEFAULT_PATH = "data/"
DEFAULT_RETENTION = 64 * 1024 * 1024
# The bound is kept by deleting whole segments, oldest first: with eight of them, at least
# 7/8 of --storage.retention.size of history is always there.
SEGMENTS = 8
MIN_SEGMENT = 4096
SEGMENT_NAME = re.compile(r"journal-(\d{8})\.jsonl")
# Records waiting for the writer. A full queue drops the record (and says so in the log)
# rather than block the probe loop: 10,000 is every check of a large config changing at once.
QUEUE_SIZE = 10_000
# Each batch is written and flushed at once, so a kill -9 loses nothing the kernel was given;
# fsync (for power loss) waits this long after a write: on an SD card, one fsync per change
# would cost more than the probes.
FSYNC_EVERY = 5.0
# The journal kept in memory when --storage.path is "" (/api/v1/changes since the start).
MEMORY_RECORDS = 1000

TYPE_VERDICT = "verdict"
TYPE_VANTAGE = "vantage"


class JournalError(Exception):
    """The storage directory cannot be used (an error at start: exit 2)."""


def rfc3339(timestamp: float) -> str:
    """Unix time -> `2026-12-01T11:25:24.123456Z`; microseconds, so that a restored "since" is
    the same number as before the restart."""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_rfc3339(text: str) -> float:
    """RFC 3339 (`Z` or an offset; seconds fraction optional) -> unix time; ValueError if not."""
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|z|[+-]\d\d:\d\d)", text):
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    moment = datetime.datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    return moment.timestamp()


def _encode(value: object) -> Any:
    if isinstance(value, Result):
        return value.to_dict()
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode(record: dict[str, Any]) -> str:
    """One journal line; a Result inside the record (the evidence) becomes its JSON object."""
    return json.dumps(record, default=_encode, ensure_ascii=False, separators=(",", ":"))


class Journal(Protocol):
    def append(self, record: dict[str, Any]) -> None:
        """Queue a record; never blocks. `evidence` may be a Result (encoded by the writer)."""

    def newest_first(self) -> Iterator[dict[str, Any]]: ...

    def oldest_first(self) -> Iterator[dict[str, Any]]: ...

    def close(self) -> None: ...


class MemoryJournal:
    """--storage.path="": nothing on disk; the last records since the start, for the API."""

    def __init__(self, size: int = MEMORY_RECORDS) -> None:
        self._records: collections.deque[dict[str, Any]] = collections.deque(maxlen=size)
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._records.append(record)

    def newest_first(self) -> Iterator[dict[str, Any]]:
        with self._lock:
            records = list(self._records)
        for record in reversed(records):
            yield json.loads(encode(record))

    def oldest_first(self) -> Iterator[dict[str, Any]]:
        return iter(())  # nothing survives a restart

    def close(self) -> None:
        pass


class FileJournal:
    """JSON Lines in segment files `journal-NNNNNNNN.jsonl`; the highest number is written."""

    def __init__(self, path: str | os.PathLike[str], retention: int = DEFAULT_RETENTION) -> None:
        self.path = Path(path)
        self.retention = retention
        self.segment_size = max(retention // SEGMENTS, MIN_SEGMENT)
        self.dropped = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(QUEUE_SIZE)
        self._file = self._open_for_append()
        self._thread = threading.Thread(target=self._write_forever, name="journal", daemon=True)
        self._thread.start()

    # -- opening --------------------------------------------------------------------------------

    def _open_for_append(self) -> Any:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            segments = self.segments()
            if not segments:
                segments = [self.path / _segment_name(1)]
            current = segments[-1]
            handle = current.open("ab")
            # A torn last line (kill -9 or power loss mid-write) is ended here, so the next
            # record starts a line of its own; the reader skips the torn one.
            if handle.tell() and _last_byte(current) != b"\n":
                handle.write(b"\n")
            handle.flush()
            return handle
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise JournalError(
                f"--storage.path={self.path}: cannot write the journal there: {reason}"
            ) from None

    def segments(self) -> list[Path]:
        """Segment files, oldest first."""
        found = [p for p in self.path.iterdir() if SEGMENT_NAME.fullmatch(p.name)]
        return sorted(found, key=lambda p: p.name)

    # -- writing --------------------------------------------------------------------------------

    def append(self, record: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("journal queue full, records dropped", extra=_fields(self.dropped))

    def close(self) -> None:
        """Write what is queued, fsync, and stop the writer."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _write_forever(self) -> None:
        unsynced_since: float | None = None
        while True:
            timeout = None if unsynced_since is None else FSYNC_EVERY
            try:
                batch = [self._queue.get(timeout=timeout)]
            except queue.Empty:
                batch = []
            while len(batch) < QUEUE_SIZE:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            try:
                self._write([r for r in batch if r is not None])
                if batch and unsynced_since is None:
                    unsynced_since = time.monotonic()
                if unsynced_since is not None and (
                    stop or not batch or time.monotonic() - unsynced_since >= FSYNC_EVERY
                ):
                    os.fsync(self._file.fileno())
                    unsynced_since = None
            except OSError as exc:
                # A full or vanished disk loses these records, never the exporter.
                log.error("journal write failed", extra={"fields": {"error": str(exc)}})
            if stop:
                self._file.close()
                return

    def _write(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            line = (encode(record) + "\n").encode()
            if len(line) > self.segment_size:
                log.warning("journal record too large, dropped", extra=_fields(1))
                continue
            if self._file.tell() and self._file.tell() + len(line) > self.segment_size:
                self._rotate()
            self._file.write(line)
        self._file.flush()

    def _rotate(self) -> None:
        os.fsync(self._file.fileno())
        self._file.close()
        number = int(SEGMENT_NAME.fullmatch(Path(self._file.name).name).group(1))  # type: ignore[union-attr]
        self._file = (self.path / _segment_name(number + 1)).open("ab")
        segments = self.segments()
        total = sum(_size(p) for p in segments)
        for oldest in segments[:-1]:
            if total <= self.retention - self.segment_size:
                break  # room for the new segment to fill up
            total -= _size(oldest)
            oldest.unlink(missing_ok=True)

    # -- reading --------------------------------------------------------------------------------

    def newest_first(self) -> Iterator[dict[str, Any]]:
        for segment in reversed(self.segments()):
            yield from reversed(list(_read(segment, logging.DEBUG)))

    def oldest_first(self) -> Iterator[dict[str, Any]]:
        """At start: a skipped line is worth a warning then (a reader racing the writer may
        see a line half written, which is not)."""
        for segment in self.segments():
            yield from _read(segment, logging.WARNING)


def _segment_name(number: int) -> str:
    return f"journal-{number:08d}.jsonl"


def _last_byte(path: Path) -> bytes:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0  # rotated away by the writer while a reader looked


def _fields(dropped: int) -> dict[str, dict[str, str]]:
    return {"fields": {"dropped": str(dropped)}}


def _read(segment: Path, level: int) -> Iterator[dict[str, Any]]:
    """A segment's records; a torn or corrupt line is skipped, never fatal."""
    try:
        data = segment.read_bytes()
    except FileNotFoundError:
        return  # deleted by the retention bound since it was listed
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            yield record
        else:
            log.log(
                level,
                "journal line skipped: not a JSON object",
                extra={"fields": {"file": str(segment), "line": str(number)}},
            )


def open_journal(path: str, retention: int = DEFAULT_RETENTION) -> Journal:
    """The journal for --storage.path: on disk, or in memory for ""; JournalError if the
    directory cannot be written."""
    if not path:
        return MemoryJournal()
    return FileJournal(path, retention)
