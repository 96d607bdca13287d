"""The status page `/` in a real headless browser (Debian's chromium, driven by Playwright),
against the running exporter and servers of our own on loopback: verdicts in words, blocked
services first, controls apart, the vantage banner, evidence of the last run on click, live
updates without a reload, a phone-width layout, and hostile text shown as text. Screenshots
go to tests/artifacts/ (git-ignored)."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from exporter.journal import rfc3339
from peers.dnsserver import NODATA, DnsServer, records
from peers.exporterproc import REPO, ExporterProcess
from peers.listeners import accepting_port, free_port
from peers.webservers import counted, read_head, serve

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
ARTIFACTS = REPO / "tests" / "artifacts"
LAPTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# Markup that would run a script if it were ever parsed as HTML.
HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
BLOCKPAGE = "blocked-by-isp.example"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # CI installs chromium (scripts/test.sh): a missing browser is a failure, not a skip.
    assert shutil.which(CHROMIUM), "chromium is not installed (see scripts/test.sh)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=LAPTOP)  # type: ignore[arg-type]
    opened = context.new_page()
    opened.errors = []  # type: ignore[attr-defined]
    opened.on("pageerror", lambda error: opened.errors.append(str(error)))  # type: ignore[attr-defined]
    yield opened
    context.close()


def start(tmp_path: Path, services: str, top: str = "") -> ExporterProcess:
    path = tmp_path / "config.yaml"
    path.write_text(
        "defaults: {interval: 1s, timeout: 500ms}\nbogons: []\n"
        f"blockpages: ['{BLOCKPAGE}']\n{top}services:\n{services}"
    )
    return ExporterProcess(path).start()


def tcp(name: str, port: int, extra: str = "") -> str:
    return f'      - {{name: {name}, kind: tcp, target: "127.0.0.1:{port}"{extra}}}\n'


def checks(page: Page) -> dict[tuple[str, str], dict[str, Any]]:
    found = page.eval_on_selector_all(
        "[data-check]",
        """nodes => nodes.map(n => ({service: n.dataset.service, check: n.dataset.check,
             verdict: n.dataset.verdict, text: n.querySelector('summary').textContent,
             group: n.closest('section').querySelector('h2').textContent}))""",
    )
    return {(c["service"], c["check"]): c for c in found}


def wait_verdict(page: Page, service: str, check: str, verdict: str) -> None:
    page.wait_for_selector(
        f'[data-service="{service}"][data-check="{check}"][data-verdict="{verdict}"]',
        timeout=20_000,
    )


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def horizontal_overflow(page: Page) -> int:
    return int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[ExporterProcess, contextlib.ExitStack, list[int]]]:
    """Two controls that answer, a chat service whose server the test can stop, a refused
    port, a web check redirected to a blockpage, and a check that has not run yet."""
    with contextlib.ExitStack() as stack:
        control = stack.enter_context(accepting_port())
        domestic = stack.enter_context(accepting_port())
        chat = contextlib.ExitStack()
        chat_port = chat.enter_context(accepting_port())
        handler, connections = counted(_blockpage_redirect)
        web = stack.enter_context(serve(handler))
        isp = stack.enter_context(DnsServer({"messenger.test": NODATA}))
        honest = stack.enter_context(DnsServer({"messenger.test": records("192.0.2.7")}))
        exporter = start(
            tmp_path,
            # web/page is first: the first runs are spread over the interval, so with 1h
            # it runs at once and never again during the test, and web/later waits.
            f"""  web:
    description: Web site
    checks:
      - {{name: page, kind: http, target: "http://127.0.0.1:{web}/", interval: 1h}}
      - {{name: later, kind: tcp, target: "127.0.0.1:{control}", interval: 1h}}
  example:
    role: control
    checks:
{tcp("tcp", control)}
  yandex:
    role: control
    scope: domestic
    checks:
{tcp("tcp", domestic)}
  chat:
    description: Chat app
    checks:
{tcp("tcp", chat_port)}
  refused:
    description: Refused service
    checks:
{tcp("tcp", free_port())}
  messenger:
    description: Messenger
    checks:
      - {{name: dns, kind: dns, target: messenger.test, resolvers: [isp, control]}}
""",
            top=f"resolvers: {{isp: '{isp.udp_url}', control: '{honest.udp_url}'}}\n",
        )
        stack.callback(exporter.stop)
        stack.push(chat)
        yield exporter, chat, connections


def _blockpage_redirect(sock: socket.socket) -> None:
    if read_head(sock) is None:
        return
    location = f"http://{BLOCKPAGE}/?why={HOSTILE}"
    sock.sendall(
        f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n".encode()
    )


def test_page_shows_each_verdict_in_words_blocked_first_controls_apart_and_the_banner(
    site: tuple[ExporterProcess, contextlib.ExitStack, list[int]], page: Page
) -> None:
    exporter, _, _ = site
    page.goto(exporter.url + "/")
    wait_verdict(page, "refused", "tcp", "tcp_refused")
    wait_verdict(page, "web", "page", "http_blockpage")
    wait_verdict(page, "chat", "tcp", "ok")
    page.wait_for_selector('[data-vantage-state="online"]', timeout=20_000)
    shown = checks(page)
    assert "connections refused" in shown["refused", "tcp"]["text"]
    assert "a blockpage is served instead" in shown["web", "page"]["text"]
    assert "works" in shown["chat", "tcp"]["text"]
    wait_verdict(page, "messenger", "dns", "dns_nodata")
    assert "DNS records removed" in checks(page)["messenger", "dns"]["text"]
    assert shown["example", "tcp"]["group"] == "Controls"
    assert shown["yandex", "tcp"]["group"] == "Controls"
    assert shown["chat", "tcp"]["group"] == "Services"
    # A check not run yet is pending, styled apart from failures.
    assert shown["web", "later"]["verdict"] == "pending"
    assert "waiting for the first run" in shown["web", "later"]["text"]
    pending = page.locator('[data-check="later"]')
    assert "v-pending" in (pending.get_attribute("class") or "")
    # Blocked services first, the working one last.
    order = page.eval_on_selector_all(
        "#services > article",
        "nodes => nodes.map(n => n.querySelector('[data-service]').dataset.service)",
    )
    assert order.index("chat") > order.index("refused")
    assert order.index("chat") > order.index("web")
    # "since" is relative, with the absolute UTC time on hover.
    since = page.locator('[data-service="refused"] .since').first
    assert "UTC" in (since.get_attribute("title") or "")
    assert since.text_content().startswith("for ")  # type: ignore[union-attr]
    assert page.locator("#banner").get_attribute("data-vantage-state") == "online"
    screenshot(page, "status-laptop.png")
    assert page.errors == []  # type: ignore[attr-defined]


def test_evidence_of_the_last_run_opens_on_click_without_probing(
    site: tuple[ExporterProcess, contextlib.ExitStack, list[int]], page: Page
) -> None:
    exporter, _, connections = site
    page.goto(exporter.url + "/")
    wait_verdict(page, "web", "page", "http_blockpage")
    assert connections[0] == 1  # its one scheduled run (interval 1h)
    page.click('[data-service="web"][data-check="page"] summary')
    evidence = page.locator('[data-service="web"][data-check="page"] .evidence')
    evidence.wait_for()
    text = evidence.text_content() or ""
    assert "127.0.0.1" in text and "http_blockpage" in text and "302" in text
    assert "Location" in text and "connect" in text
    wait_verdict(page, "refused", "tcp", "tcp_refused")
    page.click('[data-service="refused"][data-check="tcp"] summary')
    refused = page.locator('[data-service="refused"][data-check="tcp"] .evidence')
    assert "ConnectionRefusedError" in (refused.text_content() or "")
    # The panel stays open across refreshes, and nothing was probed to fill it.
    # A dns check shows each resolver's answer.
    wait_verdict(page, "messenger", "dns", "dns_nodata")
    page.click('[data-service="messenger"][data-check="dns"] summary')
    resolvers = page.locator('[data-service="messenger"] .evidence table')
    resolvers.wait_for()
    rows = resolvers.text_content() or ""
    assert "isp" in rows and "dns_nodata" in rows
    assert "control (control)" in rows and "192.0.2.7" in rows
    page.wait_for_timeout(6000)
    assert page.locator('[data-check="page"] .evidence').count() == 1
    assert connections[0] == 1
    screenshot(page, "status-evidence-laptop.png")


def test_page_follows_a_verdict_change_without_reloading(
    site: tuple[ExporterProcess, contextlib.ExitStack, list[int]], page: Page
) -> None:
    exporter, chat, _ = site
    page.goto(exporter.url + "/")
    wait_verdict(page, "chat", "tcp", "ok")
    page.evaluate("window.notReloaded = true")
    chat.close()  # the chat server goes away: its port now refuses
    wait_verdict(page, "chat", "tcp", "tcp_refused")
    assert page.evaluate("window.notReloaded") is True
    assert "connections refused" in checks(page)["chat", "tcp"]["text"]
    # The strip shows both verdicts, oldest first.
    cells = page.eval_on_selector_all(
        '[data-service="chat"] .strip span', "nodes => nodes.map(n => n.className)"
    )
    assert cells == ["ok", "bad"]


def test_page_is_readable_at_phone_width_without_horizontal_scrolling(
    site: tuple[ExporterProcess, contextlib.ExitStack, list[int]], browser: Browser
) -> None:
    exporter, _, _ = site
    context = browser.new_context(
        viewport=PHONE,  # type: ignore[arg-type]
        device_scale_factor=2,
        is_mobile=True,
        color_scheme="dark",
    )
    try:
        phone = context.new_page()
        phone.goto(exporter.url + "/")
        wait_verdict(phone, "web", "page", "http_blockpage")
        wait_verdict(phone, "refused", "tcp", "tcp_refused")
        phone.click('[data-service="web"][data-check="page"] summary')
        phone.locator('[data-check="page"] .evidence').wait_for()
        assert phone.evaluate("window.innerWidth") == PHONE["width"]  # the viewport meta works
        assert horizontal_overflow(phone) <= 0
        # prefers-color-scheme: dark gives a dark page, not a white one.
        background = phone.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(19, 20, 22)"
        screenshot(phone, "status-phone.png")
    finally:
        context.close()


def test_hostile_description_and_server_answer_are_shown_as_text(
    tmp_path: Path, page: Page
) -> None:
    handler, _ = counted(_blockpage_redirect)
    with serve(handler) as web, accepting_port() as control:
        exporter = start(
            tmp_path,
            f"""  evil:
    description: 'Evil {HOSTILE}'
    checks:
      - {{name: page, kind: http, target: "http://127.0.0.1:{web}/"}}
  example:
    role: control
    checks:
{tcp("tcp", control)}
""",
        )
        try:
            page.goto(exporter.url + "/")
            wait_verdict(page, "evil", "page", "http_blockpage")
            page.click('[data-service="evil"] summary')
            detail = page.locator('[data-service="evil"] .evidence pre')
            detail.wait_for()
            assert HOSTILE in (detail.text_content() or "")
            assert HOSTILE in (page.locator("#services h3").first.text_content() or "")
            page.wait_for_timeout(500)
            assert page.evaluate("window.pwned") is None
            assert page.locator("img").count() == 0
            assert page.locator("script").count() == 1  # the page's own
            screenshot(page, "status-hostile.png")
        finally:
            exporter.stop()


@pytest.mark.parametrize(
    ("state", "words"),
    [
        ("offline", ["the network is down", "do not mean blocking"]),
        ("whitelist", ["whitelist mode", "only domestic controls are reachable"]),
    ],
)
def test_banner_explains_a_vantage_state_that_makes_failures_meaningless(
    tmp_path: Path, page: Page, state: str, words: list[str]
) -> None:
    down = free_port()
    with accepting_port() as up:
        exporter = start(
            tmp_path,
            f"""  example:
    role: control
    checks:
{tcp("tcp", down)}
  yandex:
    role: control
    scope: domestic
    checks:
{tcp("tcp", up if state == "whitelist" else down)}
  chat:
    checks:
{tcp("tcp", down)}
""",
        )
        try:
            page.goto(exporter.url + "/")
            page.wait_for_selector(f'[data-vantage-state="{state}"]', timeout=20_000)
            text = page.locator("#banner").text_content() or ""
            for phrase in words:
                assert phrase in text
            screenshot(page, f"status-{state}.png")
        finally:
            exporter.stop()


def test_after_a_restart_a_check_not_run_yet_shows_what_it_last_saw(
    tmp_path: Path, page: Page
) -> None:
    storage = tmp_path / "data"  # where ExporterProcess keeps the journal
    storage.mkdir()
    day_ago = time.time() - 86400 - 3600
    record = {"time": rfc3339(day_ago), "type": "verdict", "service": "slow", "check": "tcp",
              "kind": "tcp", "target": "127.0.0.1:1", "from": "ok", "to": "tcp_timeout",
              "evidence": {"verdict": "tcp_timeout"}}  # fmt: skip
    (storage / "journal-00000001.jsonl").write_text(json.dumps(record) + "\n")
    # On 1h, the first check runs at once and the second half an hour later.
    first, slow = free_port(), free_port()
    exporter = start(
        tmp_path,
        f"  first:\n    checks:\n{tcp('tcp', first, ', interval: 1h')}"
        f"  slow:\n    checks:\n{tcp('tcp', slow, ', interval: 1h')}",
    )
    try:
        page.goto(exporter.url + "/")
        wait_verdict(page, "first", "tcp", "tcp_refused")
        slow_check = checks(page)["slow", "tcp"]
        assert slow_check["verdict"] == "pending"
        assert (
            "before the restart: connections silently dropped for 1 day 1 h" in (slow_check["text"])
        )
        screenshot(page, "status-restarted.png")
    finally:
        exporter.stop()
