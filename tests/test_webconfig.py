"""The exporter-toolkit web configuration: every problem refused at start with its line,
passwords checked the way Go's bcrypt checks them, the same work for unknown users, bcrypt
bounded, and the file re-read when it changes (or on SIGHUP), keeping the last good one."""

from __future__ import annotations

import base64
import concurrent.futures
import os
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt
import pytest

from exporter import webauth
from exporter.webconfig import WebConfigError, WebConfigWatcher, load
from peers import certs
from peers.exporterproc import REPO, ExporterProcess

CONFIG = """
services:
  s:
    checks:
      - {{name: tcp, kind: tcp, target: "127.0.0.1:{port}", interval: 10s, timeout: 1s}}
"""


def hashed(password: bytes, cost: int = 4) -> str:
    return bcrypt.hashpw(password, bcrypt.gensalt(rounds=cost)).decode()


def basic(user: bytes, password: bytes) -> str:
    return "Basic " + base64.b64encode(user + b":" + password).decode()


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "web.yml"
    path.write_text(text)
    with pytest.raises(WebConfigError) as caught:
        load(str(path))
    prefix = f"{path}:"
    return [line.removeprefix(prefix) for line in caught.value.lines()]


@pytest.fixture(scope="module")
def pem() -> tuple[str, str]:
    return certs.issue("127.0.0.1", "localhost")


def tls(pem: tuple[str, str], extra: str = "") -> str:
    return f"tls_server_config:\n  cert_file: {pem[0]}\n  key_file: {pem[1]}\n{extra}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("basic_auth_users:\n  alice: $2garbage\n",
         ["2: basic_auth_users.alice: must be a bcrypt hash ($2y$10$ followed by 53 characters)"]),
        ("basic_auth_users:\n  alice: '$2y$03$" + "a" * 53 + "'\n",
         ["2: basic_auth_users.alice: bcrypt cost 3 is outside 4..31"]),
        ("basic_auth_users:\n  'a:b': '$2y$04$" + "a" * 53 + "'\n",
         ["2: basic_auth_users['a:b']: a user name cannot contain ':' (basic auth splits at it)"]),
        ("http_server_config:\n  headers:\n    X-Frame-Options: \"deny\\r\\nSet-Cookie: a=b\"\n",
         ["3: http_server_config.headers.X-Frame-Options: a header value cannot contain a "
          "line break or control character"]),
        ("http_server_config:\n  headers:\n    Content-Length: '0'\n    Set-Cookie: a=b\n",
         ["3: http_server_config.headers.Content-Length: header cannot be configured; one of: "
          "Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, "
          "X-XSS-Protection, Content-Security-Policy",
          "4: http_server_config.headers.Set-Cookie: header cannot be configured; one of: "
          "Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, "
          "X-XSS-Protection, Content-Security-Policy"]),
        ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
         ["3: http_server_config.headers.X-Frame-Options: must be one of: deny, sameorigin"]),
        ("http_server_config:\n  header: {}\n  http2: maybe\n",
         ["2: http_server_config.header: unknown key; did you mean 'headers'?",
          "3: http_server_config.http2: must be true or false"]),
        ("rate_limit: {burst: 1}\nbasic_auth: {}\n",
         ["1: rate_limit: not supported by this exporter",
          "2: basic_auth: unknown key; did you mean 'basic_auth_users'?"]),
    ],
    ids=["garbage-hash", "low-cost", "colon-user", "crlf-header", "reserved-headers",
         "header-value", "http-keys", "top-keys"],
)  # fmt: skip
def test_a_bad_web_config_is_refused_with_every_problem_and_its_line(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    assert problems(tmp_path, text) == expected


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_RSA_WITH_RC4_128_SHA]\n",
         ["4: tls_server_config.cipher_suites[1]: unknown value 'TLS_RSA_WITH_RC4_128_SHA'; "
          "did you mean 'TLS_RSA_WITH_AES_128_CBC_SHA'?"]),
        ("  curve_preferences: [CurveP256, P-192]\n",
         ["4: tls_server_config.curve_preferences[1]: unknown value 'P-192'; one of: "
          "CurveP256, CurveP384, CurveP521, X25519"]),
        ("  min_version: TLS13\n  max_version: TLS12\n",
         ["4: tls_server_config.min_version: TLS13 is above max_version TLS12"]),
        ("  client_auth_type: RequireAnyClientCert\n",
         ["4: tls_server_config.client_auth_type: RequireAnyClientCert needs client_ca_file"]),
        ("  client_auth_type: RequireAndVerifyClientCert\n",
         ["4: tls_server_config.client_auth_type: RequireAndVerifyClientCert needs "
          "client_ca_file"]),
        ("  client_ca_file: {ca}\n",
         ["4: tls_server_config.client_ca_file: a client CA needs client_auth_type "
          "VerifyClientCertIfGiven, RequireAnyClientCert or RequireAndVerifyClientCert"]),
        ("  client_auth_type: NoCert\n",
         ["4: tls_server_config.client_auth_type: unknown value 'NoCert'; did you mean "
          "'NoClientCert'?"]),
        ("  cert: inline\n  sni: x\n",
         ["4: tls_server_config.cert: inline certificates are not supported; use cert_file",
          "5: tls_server_config.sni: unknown key; one of: cert_file, key_file, "
          "client_auth_type, client_ca_file, client_ca, min_version, max_version, "
          "cipher_suites, curve_preferences, prefer_server_cipher_suites"]),
    ],
    ids=["cipher", "curve", "min-above-max", "require-any-no-ca", "require-verify-no-ca",
         "ca-without-auth", "auth-type", "tls-keys"],
)  # fmt: skip
def test_a_bad_tls_server_config_is_refused_with_every_problem_and_its_line(
    tmp_path: Path, pem: tuple[str, str], extra: str, expected: list[str]
) -> None:
    text = tls(pem, extra.replace("{ca}", certs.ca_pem_path()))
    assert problems(tmp_path, text) == expected


def test_a_cert_file_that_is_a_fifo_is_refused_without_blocking(
    tmp_path: Path, pem: tuple[str, str]
) -> None:
    fifo = tmp_path / "cert.pem"
    os.mkfifo(fifo)
    assert problems(tmp_path, tls((str(fifo), pem[1]))) == [
        "2: tls_server_config.cert_file: cannot read "
        f"{fifo}: a FIFO (named pipe), not a regular file"
    ]


def test_relative_file_names_are_relative_to_the_web_config(
    tmp_path: Path, pem: tuple[str, str]
) -> None:
    (tmp_path / "c.pem").write_bytes(Path(pem[0]).read_bytes())
    (tmp_path / "k.pem").write_bytes(Path(pem[1]).read_bytes())
    path = tmp_path / "web.yml"
    path.write_text(
        "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n"
        "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n"
        "  curve_preferences: [X25519]\n  client_auth_type: RequestClientCert\n"
    )
    config = load(str(path))
    assert isinstance(config.ssl_context, ssl.SSLContext)
    suites = {c["name"] for c in config.ssl_context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert suites == {"ECDHE-RSA-AES128-GCM-SHA256"}


def test_a_bad_web_config_stops_the_exporter_with_exit_2_and_all_its_lines(
    tmp_path: Path,
) -> None:
    web = tmp_path / "web.yml"
    web.write_text(
        "basic_auth_users:\n  alice: $2garbage\n"
        "http_server_config:\n  headers:\n    Transfer-Encoding: chunked\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "exporter", f"--web.config.file={web}",
         f"--config.file={REPO / 'config.yaml'}", "--web.listen-address=127.0.0.1:0"],
        cwd=REPO, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert [line.split(": ")[0] for line in lines] == [f"{web}:2", f"{web}:5"]


def auth_config(tmp_path: Path, users: dict[str, str]) -> Path:
    path = tmp_path / "web.yml"
    path.write_text(
        "basic_auth_users:\n" + "".join(f"  {user}: '{h}'\n" for user, h in users.items())
    )
    return path


def test_a_password_over_72_bytes_is_compared_by_its_first_72_as_go_does(
    tmp_path: Path,
) -> None:
    long = b"p" * 72 + b"-and-more-that-bcrypt-never-sees"
    config = load(str(auth_config(tmp_path, {"alice": hashed(long[:72])})))
    assert config.authorized(basic(b"alice", long))
    assert config.authorized(basic(b"alice", long[:72]))
    assert not config.authorized(basic(b"alice", b"q" + long[1:]))


def test_a_password_that_is_not_utf8_is_compared_as_bytes(tmp_path: Path) -> None:
    config = load(str(auth_config(tmp_path, {"alice": hashed(b"p\xe4ss")})))
    assert config.authorized(basic(b"alice", b"p\xe4ss"))
    assert not config.authorized(basic(b"alice", b"pass"))


def test_an_unknown_user_costs_as_much_time_as_a_known_one(tmp_path: Path) -> None:
    config = load(str(auth_config(tmp_path, {"alice": hashed(b"right", cost=10)})))
    config.authorized(basic(b"nobody", b"x"))  # makes the dummy hash, once

    def timed(user: bytes) -> float:
        started = time.perf_counter()
        assert not config.authorized(basic(user, b"wrong"))
        return time.perf_counter() - started

    # Interleaved, so that a burst of load on the shared machine hits both alike. Before,
    # an unknown user took 0.01 ms against 70 ms: any ratio near 1 tells them apart.
    pairs = [(timed(b"alice"), timed(b"nobody")) for _ in range(7)]
    known = statistics.median(k for k, _ in pairs)
    unknown = statistics.median(u for _, u in pairs)
    assert unknown > 0.25 * known, (known, unknown)


def test_bcrypt_runs_one_check_at_a_time_and_waiters_give_up_in_bounded_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webauth, "BCRYPT_WAIT", 0.01)
    users = {f"u{i}": hashed(b"right", cost=12) for i in range(4)}
    config = load(str(auth_config(tmp_path, users)))
    barrier = threading.Barrier(4)

    def login(user: str) -> tuple[bool, float]:
        barrier.wait()
        started = time.monotonic()
        return config.authorized(basic(user.encode(), b"right")), time.monotonic() - started

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(login, users))
    assert sum(ok for ok, _ in results) == 1, results
    # Refused after the 10 ms wait, not after the others' bcrypt (~250 ms each at cost 12).
    assert all(took < 0.5 for ok, took in results if not ok), results
    # Once the slot is free again, each gets its turn.
    assert all(config.authorized(basic(user.encode(), b"right")) for user in users)


def test_a_verified_password_is_remembered_and_never_hashed_again(tmp_path: Path) -> None:
    config = load(str(auth_config(tmp_path, {"alice": hashed(b"right", cost=12)})))
    assert config.authorized(basic(b"alice", b"right"))
    started = time.perf_counter()
    for _ in range(20):
        assert config.authorized(basic(b"alice", b"right"))
    assert time.perf_counter() - started < 0.05
    assert not config.authorized(basic(b"alice", b"wrong"))


def fetch(port: int, user: bytes, password: bytes) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/-/healthy")
    request.add_header("Authorization", basic(user, password))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def start_behind_auth(process: ExporterProcess) -> None:
    """Start the exporter and wait until it answers: its readiness polling has no password,
    so start() gives up, and a loaded machine may need longer than that to come up."""
    with pytest.raises(RuntimeError):
        process.start(ready_timeout=2)

    def answers() -> bool:
        try:
            fetch(process.port, b"nobody", b"x")
        except OSError:
            return False
        return True

    process.wait_for(answers, timeout=20)


def replace(path: Path, text: str) -> None:
    """As editors and configuration managers do: a new file renamed over the old one."""
    new = path.with_suffix(".new")
    new.write_text(text)
    new.rename(path)


def test_a_changed_password_applies_without_restart_and_a_broken_file_keeps_the_last_good(
    tmp_path: Path, listener: int
) -> None:
    web = auth_config(tmp_path, {"alice": hashed(b"old")})
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(port=listener))
    process = ExporterProcess(path, [f"--web.config.file={web}"])
    try:
        start_behind_auth(process)
        assert fetch(process.port, b"alice", b"old") == 200
        replace(web, f"basic_auth_users:\n  alice: '{hashed(b'new')}'\n")
        process.wait_for(lambda: fetch(process.port, b"alice", b"new") == 200, timeout=5)
        assert fetch(process.port, b"alice", b"old") == 401
        replace(web, "basic_auth_users:\n  alice: $2garbage\n")
        # Looked at when a request comes, as the exporter-toolkit does.
        process.wait_for(
            lambda: (
                fetch(process.port, b"alice", b"new") == 200 and "re-read failed" in process.logs()
            ),
            timeout=5,
        )
        assert "basic_auth_users.alice: must be a bcrypt hash" in process.logs()
    finally:
        process.stop()


def test_sighup_re_reads_the_web_config_even_when_the_file_looks_unchanged(
    tmp_path: Path, listener: int
) -> None:
    web = auth_config(tmp_path, {"alice": hashed(b"old1")})
    before = web.stat()
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(port=listener))
    process = ExporterProcess(path, [f"--web.config.file={web}"])
    try:
        start_behind_auth(process)
        assert fetch(process.port, b"alice", b"old1") == 200
        # Same inode, size and mtime: only SIGHUP can notice.
        web.write_text(f"basic_auth_users:\n  alice: '{hashed(b'new1')}'\n")
        os.utime(web, ns=(before.st_atime_ns, before.st_mtime_ns))
        time.sleep(1.5)
        assert fetch(process.port, b"alice", b"new1") == 401
        process.reload()
        process.wait_for(lambda: fetch(process.port, b"alice", b"new1") == 200, timeout=5)
    finally:
        process.stop()


def test_the_watcher_refuses_turning_tls_on_without_a_restart(
    tmp_path: Path, pem: tuple[str, str]
) -> None:
    web = auth_config(tmp_path, {"alice": hashed(b"pw")})
    watcher = WebConfigWatcher(str(web))
    replace(web, tls(pem))
    assert not watcher.reload()
    assert watcher.current().ssl_context is None
    assert watcher.current().authorized(basic(b"alice", b"pw"))


def test_config_check_checks_the_web_config_too(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  alice: $2garbage\n")
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.check", f"--web.config.file={web}",
         f"--config.file={REPO / 'config.yaml'}"],
        cwd=REPO, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout
    assert result.stderr.startswith(f"{web}:2: basic_auth_users.alice: must be a bcrypt hash")


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_web_config_path_that_is_not_a_regular_file_is_refused_at_once(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "web.yml"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    with pytest.raises(WebConfigError) as caught:
        load(str(path))
    assert caught.value.lines() == [
        f"{path}: cannot read web configuration: "
        + ("a FIFO (named pipe)" if kind == "fifo" else "a character device")
        + ", not a regular file"
    ]
