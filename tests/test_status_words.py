"""Every verdict and vantage state has its words on the status page."""

from __future__ import annotations

from exporter.statuspage.words import VANTAGE_TEXT, VERDICT_TEXT, verdict_text
from exporter.verdicts import VantageState, Verdict


def test_every_verdict_and_vantage_state_has_plain_words() -> None:
    assert set(VERDICT_TEXT) == set(Verdict)
    assert set(VANTAGE_TEXT) == set(VantageState)
    assert all(text and text != str(verdict) for verdict, text in VERDICT_TEXT.items())
    assert verdict_text(Verdict.DNS_NODATA) == "DNS records removed"
    assert verdict_text(Verdict.TLS_RESET) == "TLS reset when the name is seen"
    assert verdict_text(None) == "waiting for the first run"
