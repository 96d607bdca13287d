"""The Prometheus exporter-toolkit web configuration (`--web.config.file`): TLS for every
endpoint and HTTP basic auth with bcrypt-hashed passwords."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import ssl
import threading

import yaml

_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version",
             "max_version", "cipher_suites", "prefer_server_cipher_suites",
             "curve_preferences"}  # fmt: skip


class WebConfigError(Exception):
    pass


@dataclasses.dataclass
class WebConfig:
    ssl_context: ssl.SSLContext | None = None
    users: dict[str, bytes] = dataclasses.field(default_factory=dict)
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    _verified: dict[str, bytes] = dataclasses.field(default_factory=dict)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def authorized(self, header: str | None) -> bool:
        """True when no users are configured, or the Authorization header names one with
        the right password. Verified credentials are remembered by digest, since bcrypt is
        deliberately slow and Prometheus sends the same ones every scrape."""
        if not self.users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        if hashed is None:
            return False
        digest = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        with self._lock:
            known = self._verified.get(user)
        if known is not None and hmac.compare_digest(known, digest):
            return True
        try:
            import bcrypt  # only a web configuration with basic auth needs it

            ok = bcrypt.checkpw(password.encode(), hashed)
        except ValueError:
            return False
        if ok:
            with self._lock:
                self._verified[user] = digest
        return ok


def load(path: str) -> WebConfig:
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise WebConfigError(f"{path}: cannot read web configuration: {exc}") from None
    if not isinstance(data, dict):
        raise WebConfigError(f"{path}: must be a mapping")
    unknown = set(data) - {"tls_server_config", "basic_auth_users", "http_server_config"}
    if unknown:
        raise WebConfigError(f"{path}: unknown keys: {', '.join(sorted(map(str, unknown)))}")
    config = WebConfig()
    tls = data.get("tls_server_config")
    if tls:
        config.ssl_context = _ssl_context(path, tls)
    for user, hashed in _mapping(path, "basic_auth_users", data.get("basic_auth_users")).items():
        if not isinstance(hashed, str) or not hashed.startswith("$2"):
            raise WebConfigError(f"{path}: basic_auth_users.{user}: must be a bcrypt hash")
        config.users[str(user)] = hashed.encode()
    http = _mapping(path, "http_server_config", data.get("http_server_config"))
    headers = _mapping(path, "http_server_config.headers", http.get("headers"))
    config.headers = {str(k): str(v) for k, v in headers.items()}
    return config


def _mapping(path: str, key: str, value: object) -> dict[object, object]:
    """`value` as a mapping (nothing is an empty one), else a WebConfigError."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(f"{path}: {key}: must be a mapping")
    return value


def _ssl_context(path: str, tls: object) -> ssl.SSLContext:
    if not isinstance(tls, dict):
        raise WebConfigError(f"{path}: tls_server_config: must be a mapping")
    unknown = set(tls) - _TLS_KEYS
    if unknown:
        names = ", ".join(sorted(unknown))
        raise WebConfigError(f"{path}: tls_server_config: unknown keys: {names}")
    if not tls.get("cert_file") or not tls.get("key_file"):
        raise WebConfigError(f"{path}: tls_server_config: cert_file and key_file are required")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls["cert_file"], tls["key_file"])
        for key, attr in (("min_version", "minimum_version"), ("max_version", "maximum_version")):
            if key in tls:
                if tls[key] not in _TLS_VERSIONS:
                    raise WebConfigError(
                        f"{path}: tls_server_config.{key}: one of {', '.join(_TLS_VERSIONS)}"
                    )
                setattr(context, attr, _TLS_VERSIONS[tls[key]])
        auth = tls.get("client_auth_type", "NoClientCert")
        if auth not in _CLIENT_AUTH:
            raise WebConfigError(
                f"{path}: tls_server_config.client_auth_type: one of {', '.join(_CLIENT_AUTH)}"
            )
        context.verify_mode = _CLIENT_AUTH[auth]
        if tls.get("client_ca_file"):
            context.load_verify_locations(cafile=tls["client_ca_file"])
        elif auth in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert"):
            raise WebConfigError(f"{path}: tls_server_config: {auth} needs client_ca_file")
    except (OSError, ssl.SSLError, TypeError) as exc:
        # TypeError: a value of the wrong type (a list where a file name belongs).
        raise WebConfigError(f"{path}: tls_server_config: {exc}") from None
    return context
