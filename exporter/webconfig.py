"""The Prometheus exporter-toolkit web configuration (`--web.config.file`): TLS for every
endpoint, HTTP basic auth with bcrypt-hashed passwords, and a few response headers. Checked
as fully as the main configuration (every problem at once, FILE:LINE: key.path: message) and
re-read when the file, or a file it names, changes."""

from __future__ import annotations

import difflib
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from exporter import safefile
from exporter.config import yamlsource
from exporter.errors import ConfigError, Problem
from exporter.webauth import BasicAuth, hash_problem

log = logging.getLogger(__name__)

# The exporter-toolkit's defaults.
DEFAULT_MIN_VERSION, DEFAULT_MAX_VERSION = "TLS12", "TLS13"
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# OpenSSL verifies a client certificate only against a CA, so every type that asks for one
# needs client_ca_file. RequestClientCert asks without ever checking, and nothing here reads
# a client certificate, so not asking at all serves it the same.
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "RequireClientCert": ssl.CERT_REQUIRED,  # the exporter-toolkit's old name for the above
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
NEEDS_CA = {"VerifyClientCertIfGiven", "RequireAnyClientCert", "RequireClientCert",
            "RequireAndVerifyClientCert"}  # fmt: skip
# Go's crypto/tls names (tls.CipherSuites(), what the exporter-toolkit accepts) → OpenSSL's.
# As in Go, the list governs TLS 1.2 and below; TLS 1.3 suites are accepted and always on.
CIPHER_SUITES = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
}
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1",
          "X25519": "X25519"}  # fmt: skip
# The only headers the exporter-toolkit lets a web configuration add (and, for two, the only
# values): anything else — Content-Length, Transfer-Encoding, Connection, Set-Cookie — would
# let a configuration corrupt or hijack every response.
HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}

TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
TLS_KEYS = ("cert_file", "key_file", "client_auth_type", "client_ca_file", "client_ca",
            "min_version", "max_version", "cipher_suites", "curve_preferences",
            "prefer_server_cipher_suites")  # fmt: skip
HTTP_KEYS = ("headers", "http2")
# exporter-toolkit keys this exporter does not implement: refused by name, not as unknown.
UNSUPPORTED = {
    "rate_limit": "not supported by this exporter",
    "cert": "inline certificates are not supported; use cert_file",
    "key": "inline keys are not supported; use key_file",
    "client_allowed_sans": "not supported by this exporter",
}
# How often current() looks at the files for a change: a stat or four, at most once a second.
CHECK_INTERVAL = 1.0

Path = tuple[str, ...]


class WebConfigError(ConfigError):
    """A web configuration that cannot be used; every problem, with its line."""


class WebConfig:
    """One loaded web configuration. `authorized` blocks (bcrypt): call it off the loop."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None = None,
        users: dict[str, bytes] | None = None,
        headers: dict[str, str] | None = None,
        files: tuple[str, ...] = (),
    ) -> None:
        self.ssl_context = ssl_context
        self.headers = dict(headers or {})
        self.files = files  # the files it was made from, watched for changes
        self._auth = BasicAuth(users) if users else None

    @property
    def users(self) -> dict[str, bytes]:
        return {} if self._auth is None else {u.decode(): h for u, h in self._auth.users.items()}

    def authorized(self, header: str | None) -> bool:
        """True when no users are configured, or the Authorization header names one with the
        right password."""
        return self._auth is None or self._auth.check(header)


def load(path: str) -> WebConfig:
    """Read and check `path`; raises WebConfigError listing every problem."""
    try:
        data = safefile.read_bounded(path)
    except (safefile.FileReadError, ValueError) as exc:
        raise WebConfigError(
            path, [Problem(0, "", f"cannot read web configuration: {exc}")]
        ) from None
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise WebConfigError(path, [Problem(line, "", "not valid UTF-8")]) from None
    try:
        doc = yamlsource.load(text)
    except yamlsource.YamlSyntaxError as exc:
        raise WebConfigError(path, [Problem(exc.line, "", exc.message)]) from None
    builder = _Builder(doc, os.path.dirname(path))
    config = builder.build()
    if builder.problems or config is None:
        raise WebConfigError(path, builder.problems)
    config.files = (path, *config.files)
    return config


class _Builder:
    def __init__(self, doc: yamlsource.Located, base_dir: str) -> None:
        self.doc = doc
        self.base_dir = base_dir
        self.problems: list[Problem] = []
        self.files: list[str] = []
        for issue in doc.issues:
            line, column = issue.position or doc.position_of(issue.path)
            self.problems.append(Problem(line, _dotted(issue.path), issue.message, column))

    def problem(self, path: Path, message: str) -> None:
        line, column = self.doc.position_of(path)
        self.problems.append(Problem(line, _dotted(path), message, column))

    def build(self) -> WebConfig | None:
        data = self.doc.data
        if data is None:
            return WebConfig()  # an empty file: no TLS, no auth, as in the exporter-toolkit
        top = self.mapping((), data)
        if top is None:
            return None
        self.known_keys((), top, TOP_KEYS)
        context = self.tls(self.mapping(("tls_server_config",), top.get("tls_server_config")))
        users = self.users(self.mapping(("basic_auth_users",), top.get("basic_auth_users")))
        headers = self.http(self.mapping(("http_server_config",), top.get("http_server_config")))
        return WebConfig(context, users, headers, tuple(self.files))

    # -- shapes ----------------------------------------------------------------------------

    def mapping(self, path: Path, value: Any) -> dict[str, Any] | None:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(path, "must be a mapping")
            return None
        return value

    def known_keys(self, path: Path, mapping: dict[str, Any], allowed: tuple[str, ...]) -> None:
        for key in mapping:
            if key in allowed:
                continue
            if key in UNSUPPORTED:
                self.problem((*path, key), UNSUPPORTED[key])
                continue
            hint = difflib.get_close_matches(key, allowed, n=1)
            suffix = f"; did you mean {hint[0]!r}?" if hint else f"; one of: {', '.join(allowed)}"
            self.problem((*path, key), f"unknown key{suffix}")

    def text(self, path: Path, value: Any) -> str | None:
        shown = self.doc.text_of(path, value)
        if shown is None or isinstance(value, bool | list | dict):
            self.problem(path, "must be a string")
            return None
        return shown

    def choice(self, path: Path, value: Any, choices: Any) -> str | None:
        text = self.text(path, value)
        if text is None:
            return None
        if text not in choices:
            hint = difflib.get_close_matches(text, list(choices), n=1)
            more = f"; did you mean {hint[0]!r}?" if hint else f"; one of: {', '.join(choices)}"
            self.problem(path, f"unknown value {text!r}{more}")
            return None
        return text

    def names(self, path: Path, value: Any, choices: Any) -> list[str] | None:
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(path, "must be a list")
            return None
        found = [self.choice((*path, i), v, choices) for i, v in enumerate(value)]  # type: ignore[arg-type]
        return None if None in found else [name for name in found if name is not None]

    def file(self, path: Path, value: Any) -> str | None:
        name = self.text(path, value)
        if name is None:
            return None
        if not name:
            self.problem(path, "must not be empty")
            return None
        # Relative to the web configuration's directory, as in the exporter-toolkit.
        full = os.path.join(self.base_dir, name)
        try:
            safefile.read_bounded(full)
        except safefile.FileReadError as exc:
            self.problem(path, f"cannot read {name}: {exc}")
            return None
        self.files.append(full)
        return full

    # -- sections ----------------------------------------------------------------------------

    def tls(self, tls: dict[str, Any] | None) -> ssl.SSLContext | None:
        if not tls:
            return None
        base: Path = ("tls_server_config",)
        before = len(self.problems)
        self.known_keys(base, tls, TLS_KEYS)
        enabled = any(tls.get(k) for k in ("cert_file", "key_file", "client_ca_file",
                                            "client_ca", "client_auth_type"))  # fmt: skip
        for required in ("cert_file", "key_file"):
            if enabled and not tls.get(required):
                self.problem(base, f"{required} is required")
        cert = self.file((*base, "cert_file"), tls["cert_file"]) if tls.get("cert_file") else None
        key = self.file((*base, "key_file"), tls["key_file"]) if tls.get("key_file") else None
        ca_file = (
            self.file((*base, "client_ca_file"), tls["client_ca_file"])
            if tls.get("client_ca_file") else None
        )  # fmt: skip
        ca_text = (
            self.text((*base, "client_ca"), tls["client_ca"]) if tls.get("client_ca") else None
        )
        has_ca = bool(tls.get("client_ca_file") or tls.get("client_ca"))
        auth = self.choice(
            (*base, "client_auth_type"), tls.get("client_auth_type") or "NoClientCert", CLIENT_AUTH
        )
        if auth in NEEDS_CA and not has_ca:
            self.problem((*base, "client_auth_type"), f"{auth} needs client_ca_file")
        if has_ca and auth in ("NoClientCert", "RequestClientCert"):
            self.problem(
                (*base, "client_ca_file" if tls.get("client_ca_file") else "client_ca"),
                "a client CA needs client_auth_type VerifyClientCertIfGiven, "
                "RequireAnyClientCert or RequireAndVerifyClientCert",
            )
        versions = {}
        for name, default in (("min_version", DEFAULT_MIN_VERSION),
                              ("max_version", DEFAULT_MAX_VERSION)):  # fmt: skip
            versions[name] = self.choice((*base, name), tls.get(name, default), TLS_VERSIONS)
        low, high = versions["min_version"], versions["max_version"]
        if low and high and TLS_VERSIONS[low] > TLS_VERSIONS[high]:
            self.problem((*base, "min_version"), f"{low} is above max_version {high}")
        ciphers = self.names((*base, "cipher_suites"), tls.get("cipher_suites"), CIPHER_SUITES)
        curves = self.names((*base, "curve_preferences"), tls.get("curve_preferences"), CURVES)
        prefer = tls.get("prefer_server_cipher_suites", True)
        if not isinstance(prefer, bool):
            self.problem((*base, "prefer_server_cipher_suites"), "must be true or false")
        if len(self.problems) > before or not enabled or not cert or not key or auth is None:
            return None
        assert low is not None and high is not None and ciphers is not None and curves is not None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.minimum_version = TLS_VERSIONS[low]
            context.maximum_version = TLS_VERSIONS[high]
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.problem((*base, "cert_file"), f"cannot load the certificate and key: {exc}")
            return None
        context.verify_mode = CLIENT_AUTH[auth]
        try:
            if ca_file or ca_text:
                context.load_verify_locations(cafile=ca_file, cadata=ca_text)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.problem((*base, "client_ca_file" if ca_file else "client_ca"), f"{exc}")
            return None
        legacy = [CIPHER_SUITES[c] for c in ciphers if CIPHER_SUITES[c]]
        try:
            if legacy:
                context.set_ciphers(":".join(c for c in legacy if c))
        except ssl.SSLError:
            self.problem((*base, "cipher_suites"), "none of these suites is available here")
        if len(curves) == 1:
            # Python's ssl sets one group, not a list; with several, OpenSSL's defaults (which
            # hold all four) stand.
            context.set_ecdh_curve(CURVES[curves[0]])
        if prefer:
            context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        return context

    def users(self, users: dict[str, Any] | None) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for user, hashed in (users or {}).items():
            path: Path = ("basic_auth_users", user)
            if ":" in user:
                self.problem(path, "a user name cannot contain ':' (basic auth splits at it)")
                continue
            if not isinstance(hashed, str):
                self.problem(path, "must be a bcrypt hash")
                continue
            problem = hash_problem(hashed)
            if problem:
                self.problem(path, problem)
                continue
            out[user] = hashed.encode()
        return out

    def http(self, http: dict[str, Any] | None) -> dict[str, str]:
        if not http:
            return {}
        base: Path = ("http_server_config",)
        self.known_keys(base, http, HTTP_KEYS)
        if "http2" in http and not isinstance(http["http2"], bool):
            # Accepted for compatibility; this exporter serves HTTP/1.1 either way.
            self.problem((*base, "http2"), "must be true or false")
        headers = self.mapping((*base, "headers"), http.get("headers"))
        out: dict[str, str] = {}
        canonical = {name.lower(): name for name in HEADERS}
        for name, value in (headers or {}).items():
            path: Path = (*base, "headers", name)
            header = canonical.get(name.lower())
            if header is None:
                self.problem(path, f"header cannot be configured; one of: {', '.join(HEADERS)}")
                continue
            text = self.text(path, value)
            if text is None:
                continue
            if any(not (ch.isprintable() or ch == "\t") for ch in text):
                self.problem(
                    path, "a header value cannot contain a line break or control character"
                )
                continue
            allowed = HEADERS[header]
            if allowed and text.lower() not in allowed:
                self.problem(path, f"must be one of: {', '.join(allowed)}")
                continue
            out[header] = text
        return out


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part and all(ch.isalnum() or ch in "_-" for ch in part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


class WebConfigWatcher:
    """The web configuration in force: `current()` (or calling the watcher) returns it,
    re-reading the files when one changed (looked at at most every CHECK_INTERVAL), keeping
    the last good configuration when a re-read fails. TLS cannot be turned on or off without
    a restart: the listening sockets were made for one or the other."""

    def __init__(self, path: str, config: WebConfig | None = None) -> None:
        self.path = path
        self._config = config if config is not None else load(path)
        self._signature = _signature(self._files(self._config))
        self._failed: object = None  # the signature of the last failed read: logged once
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self) -> WebConfig:
        return self.current()

    def current(self) -> WebConfig:
        now = time.monotonic()
        # Non-blocking: while one caller re-reads, the others go on with the current one.
        if now - self._checked >= CHECK_INTERVAL and self._lock.acquire(blocking=False):
            try:
                self._checked = now
                self._refresh(force=False)
            finally:
                self._lock.release()
        return self._config

    def reload(self) -> bool:
        """Re-read now, changed or not (SIGHUP); False when the re-read failed."""
        with self._lock:
            return self._refresh(force=True)

    def _files(self, config: WebConfig) -> tuple[str, ...]:
        return config.files or (self.path,)

    def _refresh(self, *, force: bool) -> bool:
        signature = _signature(self._files(self._config))
        if not force and signature == self._signature:
            return True
        if not force and signature == self._failed:
            return False
        try:
            config = load(self.path)
        except WebConfigError as exc:
            self._failed = signature
            for line in exc.lines():
                log.error("web configuration re-read failed, keeping the last good one: %s", line)
            return False
        if (config.ssl_context is None) != (self._config.ssl_context is None):
            self._failed = signature
            log.error(
                "web configuration re-read failed, keeping the last good one: %s: turning TLS "
                "on or off needs a restart",
                self.path,
            )
            return False
        self._config = config
        self._signature = _signature(self._files(config))
        self._failed = None
        log.info("web configuration re-read file=%s", self.path)
        return True


def _signature(files: tuple[str, ...]) -> tuple[tuple[int, int, int, int] | None, ...]:
    """What changes when any of `files` is edited or replaced (renamed over, as editors and
    Kubernetes secrets do)."""
    out: list[tuple[int, int, int, int] | None] = []
    for name in files:
        try:
            st = os.stat(name)
        except OSError:
            out.append(None)
            continue
        out.append((st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(out)


def source(path: str | None) -> Callable[[], WebConfig]:
    """What the web server asks for the configuration in force, per connection and request:
    a watcher of `path`, or a fixed empty configuration without one."""
    if path is None:
        empty = WebConfig()
        return lambda: empty
    return WebConfigWatcher(path)
