"""Logging in the Prometheus exporters' formats: logfmt (the default) or JSON lines."""

from __future__ import annotations

import json
import logging
import sys
import time

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "error": logging.ERROR}  # fmt: skip


def fields(**values: object) -> dict[str, dict[str, str]]:
    """`extra=` for a log call whose key=value pairs are real fields of the line (logfmt keys,
    JSON members) rather than text inside msg, so Loki's `| logfmt` and `| json` see them:
    log.info("verdict changed", extra=logs.fields(service="x", to="ok"))."""
    return {"fields": {key: "" if value is None else str(value) for key, value in values.items()}}


def _fields(record: logging.LogRecord) -> dict[str, str]:
    found = getattr(record, "fields", None)
    return found if isinstance(found, dict) else {}


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + (
        f".{int(record.msecs):03d}Z"
    )


def _level(record: logging.LogRecord) -> str:
    return "warn" if record.levelno == logging.WARNING else record.levelname.lower()


def _logfmt_value(value: str) -> str:
    if value and value.isprintable() and not any(c in value for c in ' "=\\'):
        return value
    return json.dumps(value, ensure_ascii=False)


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        fields = [
            ("ts", _timestamp(record)),
            ("level", _level(record)),
            ("source", record.name),
            ("msg", message),
            *_fields(record).items(),
        ]
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in fields)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": _timestamp(record),
            "level": _level(record),
            "source": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _fields(record).items():
            entry.setdefault(key, value)  # a field never overwrites ts, level, source or msg
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


# aioquic reports what the peer did (a protocol violation, no common QUIC version) at
# warning and error level: a hostile server would fill the log at error with every probe.
# For the exporter that is evidence in the check's result, so theirs is debug, every record.
PEER_LOGGERS = ("quic", "http3")


class _PeerBehaviourAsDebug(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        # Propagated records meet only the root's handlers, which do not check the level.
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def setup(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    # Libraries' chatter at info level (every httpx request) would drown the exporter's.
    for noisy in ("httpx", "httpcore", "asyncio", *PEER_LOGGERS):
        logging.getLogger(noisy).setLevel(max(LEVELS[level], logging.WARNING))
    for name in PEER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _PeerBehaviourAsDebug) for f in logger.filters):
            logger.addFilter(_PeerBehaviourAsDebug())
