"""What happens when a verdict or the vantage state changes: it is logged at info with its
fields, kept in a short per-check history for the status page, and appended to the evidence
journal; and at start, what the journal says is handed back to the result store."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from exporter import logs
from exporter.config import Check, Config
from exporter.journal import TYPE_VANTAGE, TYPE_VERDICT, Journal, parse_rfc3339, rfc3339
from exporter.metrics import ResultStore
from exporter.result import Result
from exporter.verdicts import VantageState, Verdict

log = logging.getLogger(__name__)

# Verdicts kept per check for the status page's strip: enough to see a check flap.
HISTORY = 12

Key = tuple[str, str]
# (since, verdict): one period of one verdict, newest last.
Period = tuple[float, str]


class VerdictChanges:
    """The store's observer (ResultStore.observer)."""

    def __init__(self, store: ResultStore, journal: Journal) -> None:
        self.store = store
        self.journal = journal
        self._lock = threading.Lock()
        # Tuples, not deques of maxlen HISTORY: a deque is 600 bytes however short, 6 MB at
        # 10,000 checks that have each seen one verdict.
        self._history: dict[Key, tuple[Period, ...]] = {}
        self._controls: frozenset[str] = frozenset()
        self.vantage = VantageState.UNKNOWN
        self.vantage_since = time.time()
        # The state before a restart and since when: the first state declared after it, if
        # the same, keeps that since ("offline since Monday", not since the restart).
        self._restored_vantage: tuple[VantageState, float] | None = None

    def apply_config(self, config: Config) -> None:
        with self._lock:
            self._controls = frozenset(
                name for name, service in config.services.items() if service.role == "control"
            )

    def history(self, key: Key) -> list[Period]:
        with self._lock:
            return list(self._history.get(key, ()))

    # -- start ----------------------------------------------------------------------------------

    def restore(self) -> int:
        """Replay the journal: each check's last verdict and since go to the store, the
        verdict strip and the vantage state's since come back. Returns the records read."""
        latest: dict[Key, tuple[Verdict, float]] = {}
        count = 0
        for record in self.journal.oldest_first():
            try:
                moment = parse_rfc3339(str(record["time"]))
                if record.get("type") == TYPE_VANTAGE:
                    # Kept only to tell since when: the state itself is recomputed from the
                    # controls' new results, as it must never rest on old evidence.
                    self._restored_vantage = (VantageState(record["to"]), moment)
                    continue
                key = (str(record["service"]), str(record["check"]))
                verdict = Verdict(record["to"])
            except (KeyError, ValueError, TypeError):
                log.warning("journal record skipped: missing or bad fields")
                continue
            count += 1
            latest[key] = (verdict, moment)
            self._remember(key, moment, str(verdict))
        for key, (verdict, since) in latest.items():
            self.store.restore(key, verdict, since)
        if count:
            log.info(
                "journal restored",
                extra=logs.fields(records=count, checks=len(latest)),
            )
        return count

    # -- changes --------------------------------------------------------------------------------

    def on_change(self, check: Check, previous: Verdict | None, result: Result) -> None:
        # Called from the probe loop: a bug here must cost a journal record, not the check.
        try:
            self._on_change(check, previous, result)
        except Exception:
            log.exception("recording a verdict change failed")

    def _on_change(self, check: Check, previous: Verdict | None, result: Result) -> None:
        if previous is result.verdict:
            # A restored check's first run, the same verdict as before the restart: no
            # change to record, but the vantage state may now be known again.
            if check.service in self._controls:
                self._vantage_changed_maybe(result.finished)
            return
        self._remember(check.key, result.finished, str(result.verdict))
        fields = logs.fields(
            service=check.service,
            check=check.name,
            kind=check.kind,
            target=check.target,
            **{"from": previous, "to": result.verdict},
            detail=result.detail,
        )
        # A first run that is ok is no news; with 1,000 checks it would be 1,000 lines.
        first_ok = previous is None and result.ok
        log.log(logging.DEBUG if first_ok else logging.INFO, "verdict changed", extra=fields)
        self.journal.append(
            {
                "time": rfc3339(result.finished),
                "type": TYPE_VERDICT,
                "service": check.service,
                "check": check.name,
                "kind": check.kind,
                "target": check.target,
                "from": None if previous is None else str(previous),
                "to": str(result.verdict),
                "evidence": result,
            }
        )
        if check.service in self._controls:
            self._vantage_changed_maybe(result.finished)

    def _vantage_changed_maybe(self, moment: float) -> None:
        state = self.store.snapshot().vantage()
        with self._lock:
            previous, self.vantage = self.vantage, state
            if state is previous:
                return
            self.vantage_since = moment
            restored, self._restored_vantage = self._restored_vantage, None
            if restored is not None and restored[0] is state:
                self.vantage_since = restored[1]
        log.info("vantage state changed", extra=logs.fields(**{"from": previous, "to": state}))
        record: dict[str, Any] = {
            "time": rfc3339(moment),
            "type": TYPE_VANTAGE,
            "from": str(previous),
            "to": str(state),
        }
        self.journal.append(record)

    def _remember(self, key: Key, since: float, verdict: str) -> None:
        with self._lock:
            periods = self._history.get(key, ())
            self._history[key] = (*periods[1 - HISTORY :], (since, verdict))
