"""Loading the configuration in a forked child, for the long-running exporter.

Parsing leaves the parse behind: at 10,000 checks the node tree, the position of every key
and the walk's own objects are about 50 MB of small objects, freed when the load is done but
scattered among the configuration that stays, so CPython's allocator cannot give their memory
back (it frees an arena only when all of it is empty). In a 10,000-check exporter those holes
were about 15 MB of a 107 MB process, held for its whole life. A forked child does the parse
and sends back only the result, pickled; the exporter unpickles it into dense memory and the
parse's memory leaves with the child.

The answer is the same as `load_file`'s: the configuration, or a ConfigError with every
problem. Where there is no fork (or it fails), or the child dies without an answer, the load
runs here instead, as it would without this module."""

from __future__ import annotations

import gc
import logging
import os
import pickle
import resource
import signal
import sys
import time
import traceback
from typing import Any

from exporter.config.loader import load_file
from exporter.config.model import Config
from exporter.errors import ConfigError

log = logging.getLogger(__name__)

# Signals the exporter handles: the child must not run the exporter's handlers (they would
# write to the event loop's wakeup socket, which the child shares, and so reach the parent).
_HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def load_file_in_child(path: str) -> Config:
    """`load_file(path)` run in a forked child; raises ConfigError as it does."""
    if not hasattr(os, "fork"):
        return load_file(path)
    started = time.monotonic()
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(read_end)
        os.close(write_end)
        log.warning("cannot fork to load the configuration, loading it here: %s", exc)
        return load_file(path)
    if pid == 0:  # pragma: no cover (the child ends in os._exit: coverage never sees it)
        os.close(read_end)
        _answer(path, write_end)
    os.close(write_end)
    with open(read_end, "rb") as pipe:
        answer = pipe.read()
    _, status, usage = os.wait4(pid, 0)
    if not answer or os.waitstatus_to_exitcode(status) != 0:
        log.warning(
            "the process loading the configuration ended without an answer (%s), loading it here",
            _ending(status),
        )
        return load_file(path)
    outcome: tuple[Any, ...] = pickle.loads(answer)
    log.debug(
        "configuration loaded in a child process in %.2f s, its peak RSS %.1f MiB",
        time.monotonic() - started,
        usage.ru_maxrss / 1024,
    )
    if outcome[0] == "error":
        raise ConfigError(outcome[1], outcome[2])
    config: Config = outcome[1]
    return config


def _answer(path: str, fd: int) -> None:
    """The child: load, write the pickled outcome, and leave without running anything of the
    parent's (atexit handlers, buffered files, the event loop)."""
    code = 0
    try:
        # Nothing of the parent's is ever finalized here: a collected socket object would
        # close a descriptor number that now names one of the child's own files.
        gc.freeze()
        for signum in _HANDLED:
            signal.signal(signum, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        # The parent's sockets are not the child's to hold: while a copy is open here, a
        # connection the exporter closes (a finished probe, a web client) would stay open
        # on the wire until the child exits.
        os.closerange(3, fd)
        os.closerange(fd + 1, _highest_descriptor())
        outcome: tuple[Any, ...]
        try:
            outcome = ("config", load_file(path))
        except ConfigError as exc:
            # Sent as its parts: an exception whose __init__ takes other arguments than it
            # passes to Exception does not unpickle.
            outcome = ("error", exc.file, exc.problems)
        with open(fd, "wb") as pipe:
            pipe.write(pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))
    except BaseException:
        # A bug of ours: the parent loads the file itself and meets it there, with its
        # traceback where the exporter logs; this copy is for the console.
        traceback.print_exc(file=sys.stderr)
        code = 1
    finally:
        os._exit(code)


def _highest_descriptor() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def _ending(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
