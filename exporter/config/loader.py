"""The configuration: frozen dataclasses, their defaults as named constants, and a loader that
validates the whole file and reports every problem at once as FILE:LINE: key.path: message."""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
import ssl
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

from exporter.config import yamlsource
from exporter.errors import ConfigError, Problem
from exporter.units import format_duration, parse_duration, parse_rate, parse_size, shown

DEFAULT_INTERVAL = 60.0
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_BODY = 1024 * 1024
DEFAULT_MIN_BYTES = 64 * 1024
DEFAULT_STALL_TIMEOUT = 5.0
DEFAULT_EXPECT_STATUS = ((200, 399),)
# What an upload accepts when expect_status is not given: any status at all.
ANY_STATUS = ((100, 599),)
DIRECTION_DOWNLOAD = "download"
DIRECTION_UPLOAD = "upload"
DIRECTIONS = (DIRECTION_DOWNLOAD, DIRECTION_UPLOAD)
# The browser ClientHello shapes a tls check can send (exporter/fingerprints/<name>.json).
FINGERPRINTS = ("chrome", "firefox")
MAX_REDIRECTS = 10
SYSTEM_RESOLVER = "system"
CONTROL_RESOLVER = "control"
NO_CONTROL = "none"

KINDS = ("dns", "tcp", "tls", "http", "transfer", "stun", "quic")
# Kinds whose target is host:port, and the port used when the target gives none
# (None: a port is required).
HOST_PORT_DEFAULTS: dict[str, int | None] = {"tcp": None, "tls": 443, "stun": 3478, "quic": 443}
URL_KINDS = ("http", "transfer")
RESOLVER_SCHEMES = {"udp": 53, "tcp": 53, "tls": 853, "https": 443}
DOH_DEFAULT_PATH = "/dns-query"
PROXY_SCHEMES = ("socks5", "http")
METHODS = ("GET", "HEAD", "POST")
RECORDS = ("A", "AAAA")
ROLES = ("service", "control")
SCOPES = ("foreign", "domestic")

# IANA special-purpose ranges that never belong to a public service: an answer inside one is
# what a censoring resolver returns instead of the real address.
DEFAULT_BOGONS = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "::ffff:0:0/96",
    "100::/64",
    "2001:db8::/32",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
)

NAME_PATTERN = "[a-z0-9][a-z0-9_-]*"
NAME_RE = re.compile(NAME_PATTERN)
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
HOSTNAME_RE = re.compile(rf"(?=[^\n]{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\.?")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclasses.dataclass(frozen=True)
class ResolverSpec:
    """A DNS resolver: `system` (the nameservers of /etc/resolv.conf), or plain DNS over UDP
    or TCP, DNS over TLS, DNS over HTTPS. `host` is a name or an IP literal (no brackets);
    DoT and DoH certificates are verified for it."""

    name: str
    scheme: str  # system | udp | tcp | tls | https
    host: str = ""
    port: int = 0
    url: str = ""


@dataclasses.dataclass(frozen=True)
class DnsOptions:
    resolvers: tuple[str, ...]  # as listed (or the default), without duplicates
    control: str | None  # None: no comparison
    record: str  # A | AAAA
    expect_cidrs: tuple[IPNetwork, ...]

    @property
    def queried(self) -> tuple[str, ...]:
        """Every resolver to ask: those listed, then the control if they do not list it
        (CONTRACT.md: a control is always queried and compared against)."""
        if self.control is None or self.control in self.resolvers:
            return self.resolvers
        return (*self.resolvers, self.control)


@dataclasses.dataclass(frozen=True)
class TlsOptions:
    sni: str
    control_sni: str | None
    verify: bool
    # Browser ClientHello shapes sent besides the check's own handshake (exporter/fingerprints).
    fingerprints: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class HttpOptions:
    method: str
    expect_status: tuple[tuple[int, int], ...]  # inclusive ranges
    follow_redirects: bool
    max_body: int
    proxy: str | None
    verify: bool


@dataclasses.dataclass(frozen=True)
class TransferOptions:
    min_bytes: int
    min_rate: float | None  # bytes per second
    stall_timeout: float
    expect_status: tuple[tuple[int, int], ...]
    follow_redirects: bool
    proxy: str | None
    verify: bool
    # "download" reads the body; "upload" POSTs min_bytes and watches what the peer ACKs.
    direction: str = DIRECTION_DOWNLOAD


@dataclasses.dataclass(frozen=True)
class QuicOptions:
    sni: str
    verify: bool


Options = DnsOptions | TlsOptions | HttpOptions | TransferOptions | QuicOptions | None


@dataclasses.dataclass(frozen=True)
class Check:
    service: str
    name: str
    kind: str
    target: str  # as configured
    host: str  # name (IDNA A-label) or IP literal to resolve or connect to; for dns the name
    port: int  # 0 for dns
    interval: float
    timeout: float
    resolver: str
    address: tuple[str, ...]  # IPs used instead of resolving
    ip_version: int  # 4, 6, or 0 for any
    options: Options

    @property
    def key(self) -> tuple[str, str]:
        return (self.service, self.name)


@dataclasses.dataclass(frozen=True)
class Service:
    name: str
    description: str
    role: str  # service | control
    scope: str  # foreign | domestic
    checks: tuple[Check, ...]


@dataclasses.dataclass(frozen=True)
class Config:
    resolvers: dict[str, ResolverSpec]
    blockpages: tuple[re.Pattern[str], ...]
    bogons: tuple[IPNetwork, ...]
    ca_file: str | None  # absolute
    services: dict[str, Service]
    path: str = ""

    def checks(self) -> Iterator[Check]:
        for service in self.services.values():
            yield from service.checks

    @property
    def control_resolver(self) -> str | None:
        return CONTROL_RESOLVER if CONTROL_RESOLVER in self.resolvers else None


def load_file(path: str) -> Config:
    """Read and validate `path`; raises ConfigError listing every problem. Relative paths in
    the file (`ca_file`) are relative to the file's directory, as in Prometheus."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(path, [Problem(0, "", f"cannot read configuration: {reason}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        message = f"not valid UTF-8: byte 0x{data[exc.start]:02x} in column {column}"
        raise ConfigError(path, [Problem(line, "", message)]) from None
    return load_text(text.removeprefix("\ufeff"), path, os.path.dirname(path))


def load_text(text: str, path: str = "config.yaml", base_dir: str = "") -> Config:
    """Validate configuration `text`; `path` names it in messages, `base_dir` anchors
    relative file names (default: the current directory)."""
    try:
        doc = yamlsource.load(text)
    except yamlsource.YamlSyntaxError as exc:
        raise ConfigError(path, [Problem(exc.line, "", exc.message)]) from None
    builder = _Builder(doc, path, base_dir)
    config = builder.build()
    if builder.problems or config is None:
        raise ConfigError(path, builder.problems)
    return config


Path = tuple[str | int, ...]


_PLAIN_KEY = re.compile(r"[^\s.\[\]'\"]{1,60}")


def _dotted(path: Path) -> str:
    """`services.web.checks[0].name`; keys that would blur the path are quoted."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part) and part.isprintable():
            out += f".{part}" if out else part
        else:
            out += f"[{shown(part)}]"
    return out


@dataclasses.dataclass(frozen=True)
class _Inherited:
    """Settings that flow from defaults to a service to its checks."""

    interval: float
    timeout: float
    resolver: str
    # False where the value in force failed to parse: nothing is compared with a stand-in.
    interval_ok: bool = True
    timeout_ok: bool = True


class _Builder:
    """Walks the parsed YAML once, collecting problems instead of stopping at the first."""

    def __init__(self, doc: yamlsource.Located, path: str, base_dir: str) -> None:
        self.doc = doc
        self.path = path
        self.base_dir = base_dir
        self.problems: list[Problem] = []
        for issue in doc.issues:
            line, column = issue.position or doc.position_of(issue.path)
            self.problems.append(Problem(line, _dotted(issue.path), issue.message, column))
        self.resolver_names: dict[str, ResolverSpec] = {}
        # Resolvers defined with a bad URL: already reported, so references to them are not.
        self.broken_resolvers: set[str] = set()

    def error(self, path: Path, message: str) -> None:
        line, column = self.doc.position_of(path)
        problem = Problem(line, _dotted(path), message, column)
        if problem not in self.problems:
            self.problems.append(problem)

    # -- generic shape checks ---------------------------------------------------------------

    def mapping(
        self,
        value: Any,
        path: Path,
        allowed: tuple[str, ...],
        misplaced: Callable[[str], str | None] = lambda key: None,
    ) -> dict[str, Any]:
        """`value` as a mapping of its allowed keys; every other key is reported."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping, got {_type_name(value)}")
            return {}
        for key in value:
            if key in allowed:
                continue
            message = misplaced(key)
            if message is None:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = (
                    f"did you mean {shown(close[0])}?"
                    if close
                    else f"allowed: {', '.join(allowed)}"
                )
                message = f"unknown key ({hint})"
            self.error((*path, key), message)
        return {k: v for k, v in value.items() if k in allowed}

    def listing(self, value: Any, path: Path, *, scalar_ok: bool = False) -> list[tuple[Any, Path]]:
        """Items of a list with their paths; with `scalar_ok`, one value stands for a list of
        one (`address: 192.0.2.1`)."""
        if value is None:
            return []
        if isinstance(value, list):
            return [(item, (*path, i)) for i, item in enumerate(value)]
        if scalar_ok and not isinstance(value, dict):
            return [(value, path)]
        self.error(path, f"must be a list, got {_type_name(value)}")
        return []

    def convert(self, value: Any, path: Path, parse: Callable[[Any], Any]) -> Any:
        try:
            return parse(value)
        except ValueError as exc:
            self.error(path, str(exc))
            return None

    def text(self, path: Path, value: Any) -> str | None:
        return self.doc.text_of(path, value)

    def boolean(self, value: Any, path: Path, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(path, f"must be true or false, got {shown(value)}")
            return default
        return value

    def choice(self, value: Any, path: Path, choices: tuple[str, ...], default: str) -> str:
        if value is None:
            return default
        text = self.text(path, value)
        if text not in choices:
            self.error(path, f"must be one of {', '.join(choices)}, got {shown(value)}")
            return default
        return text

    def name(self, value: Any, path: Path, what: str) -> str | None:
        text = self.text(path, value)
        if value is None or text == "":
            self.error(path, f"a {what} name is required")
            return None
        if text is None or not NAME_RE.fullmatch(text):
            self.error(
                path, f"invalid {what} name {shown(text or value)}: must match {NAME_PATTERN}"
            )
            return None
        return text

    def duration(self, section: dict[str, Any], path: Path, key: str) -> float | None:
        """The duration under `key`, None if absent or invalid (reported)."""
        if key not in section:
            return None
        value = self.convert(section[key], (*path, key), parse_duration)
        return None if value is None else float(value)

    def inherit(self, section: dict[str, Any], path: Path, base: _Inherited) -> _Inherited:
        """`base` overridden by the interval, timeout and resolver that `section` sets. A
        timeout not below its interval is reported once, where one of them is set: a bad pair
        in defaults is not repeated for every check that inherits it."""
        interval = self.duration(section, path, "interval")
        timeout = self.duration(section, path, "timeout")
        out = _Inherited(
            interval=base.interval if interval is None else interval,
            timeout=base.timeout if timeout is None else timeout,
            resolver=self.resolver_ref(section.get("resolver"), (*path, "resolver"), base.resolver),
            interval_ok=interval is not None if "interval" in section else base.interval_ok,
            timeout_ok=timeout is not None if "timeout" in section else base.timeout_ok,
        )
        if out.interval_ok and out.timeout_ok and out.timeout >= out.interval:
            if timeout is not None:
                self.error(
                    (*path, "timeout"),
                    f"must be shorter than the interval ({format_duration(out.interval)})",
                )
            elif interval is not None:
                self.error(
                    (*path, "interval"),
                    f"must be longer than the timeout ({format_duration(out.timeout)})",
                )
        return out

    def resolver_ref(self, value: Any, path: Path, default: str) -> str:
        if value is None:
            return default
        text = self.text(path, value)
        if text in self.broken_resolvers:
            return default
        if text is None or text not in self.resolver_names:
            written = text if text is not None else value
            self.error(
                path,
                f"unknown resolver {shown(written)} (defined: {', '.join(self.resolver_names)})",
            )
            return default
        return text

    # -- sections -----------------------------------------------------------------------------

    def build(self) -> Config | None:
        data = self.doc.data
        if data is not None and not isinstance(data, dict):
            self.error(
                (),
                "the configuration must be a mapping of defaults, resolvers, blockpages, "
                f"bogons and services, got {_type_name(data)}",
            )
            return None
        top = self.mapping(data, (), ("defaults", "resolvers", "blockpages", "bogons", "services"))
        defaults = self.mapping(
            top.get("defaults"), ("defaults",), ("interval", "timeout", "resolver", "ca_file")
        )
        self.resolver_names = self.resolvers(top.get("resolvers"))
        blockpages = self.blockpages(top.get("blockpages"))
        bogons = self.bogons(top.get("bogons"))
        ca_file = self.ca_file(defaults.get("ca_file"))
        base = self.inherit(
            defaults,
            ("defaults",),
            _Inherited(DEFAULT_INTERVAL, DEFAULT_TIMEOUT, SYSTEM_RESOLVER),
        )
        services = self.services(top.get("services"), base)
        return Config(
            resolvers=self.resolver_names,
            blockpages=blockpages,
            bogons=bogons,
            ca_file=ca_file,
            services=services,
            path=self.path,
        )

    def ca_file(self, value: Any) -> str | None:
        path: Path = ("defaults", "ca_file")
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.error(path, f"must be the path of a PEM file, got {_type_name(value)}")
            return None
        ca_file = os.path.abspath(os.path.join(self.base_dir, os.path.expanduser(value)))
        try:
            # A bare context: the system store is not needed to tell whether the file loads.
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=ca_file)
        except (OSError, ValueError, ssl.SSLError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            if isinstance(exc, ssl.SSLError):
                reason = "no PEM certificates found in it"
            self.error(path, f"cannot load CA file {shown(value)}: {reason}")
            return None
        return ca_file

    def resolvers(self, value: Any) -> dict[str, ResolverSpec]:
        out = {SYSTEM_RESOLVER: ResolverSpec(SYSTEM_RESOLVER, "system")}
        if value is None:
            return out
        if not isinstance(value, dict):
            self.error(("resolvers",), f"must be a mapping of name: URL, got {_type_name(value)}")
            return out
        for key, url in value.items():
            path: Path = ("resolvers", key)
            name = self.name(key, path, "resolver")
            if name is None:
                continue
            if name == SYSTEM_RESOLVER:
                self.error(path, "'system' is built in (/etc/resolv.conf) and cannot be redefined")
                continue
            if name == NO_CONTROL:
                self.error(path, "'none' is reserved (control: none means no control resolver)")
                continue
            spec = self.resolver_url(name, url, path)
            if spec is None:
                self.broken_resolvers.add(name)
            else:
                out[name] = spec
        return out

    def resolver_url(self, name: str, url: Any, path: Path) -> ResolverSpec | None:
        expected = "expected udp://, tcp://, tls:// or https:// and a host"
        parsed = _urlsplit(url)
        if parsed is None or parsed.scheme not in RESOLVER_SCHEMES or not parsed.hostname:
            self.error(path, f"invalid resolver {shown(url)}: {expected}")
            return None
        host = _host(parsed.hostname)
        if host is None or parsed.username is not None or parsed.password is not None:
            self.error(path, f"invalid resolver {shown(url)}: bad host {shown(parsed.hostname)}")
            return None
        port = _url_port(parsed, RESOLVER_SCHEMES[parsed.scheme])
        if port is None:
            self.error(path, f"invalid resolver {shown(url)}: port must be 1-65535")
            return None
        if parsed.query or parsed.fragment or "#" in url:
            self.error(path, f"invalid resolver {shown(url)}: no query or fragment allowed")
            return None
        if parsed.scheme != "https" and parsed.path not in ("", "/"):
            self.error(path, f"invalid resolver {shown(url)}: only https:// resolvers take a path")
            return None
        if parsed.scheme == "https" and not parsed.path:
            url = url + DOH_DEFAULT_PATH
        return ResolverSpec(name, parsed.scheme, host, port, url)

    def blockpages(self, value: Any) -> tuple[re.Pattern[str], ...]:
        out = []
        for pattern, path in self.listing(value, ("blockpages",)):
            if not isinstance(pattern, str) or not pattern:
                self.error(path, f"must be a regular expression string, got {_type_name(pattern)}")
                continue
            try:
                out.append(re.compile(pattern))
            except (re.error, OverflowError, ValueError) as exc:
                self.error(path, f"invalid regular expression {shown(pattern)}: {exc}")
            except RecursionError:
                self.error(path, f"invalid regular expression {shown(pattern)}: nested too deeply")
        return tuple(out)

    def bogons(self, value: Any) -> tuple[IPNetwork, ...]:
        if value is None:
            return tuple(ipaddress.ip_network(cidr) for cidr in DEFAULT_BOGONS)
        return self.cidrs(value, ("bogons",))

    def cidrs(self, value: Any, path: Path) -> tuple[IPNetwork, ...]:
        out = []
        for cidr, item_path in self.listing(value, path):
            network = self.convert(cidr, item_path, _parse_cidr)
            if network is not None:
                out.append(network)
        return tuple(out)

    def services(self, value: Any, base: _Inherited) -> dict[str, Service]:
        path: Path = ("services",)
        if not isinstance(value, dict):
            if value is None:
                self.error(path, "at least one service is required")
            else:
                self.error(path, f"must be a mapping of name: service, got {_type_name(value)}")
            return {}
        if not value:
            self.error(path, "at least one service is required")
        out = {}
        for key, body in value.items():
            service_path = (*path, key)
            name = self.name(key, service_path, "service")
            service = self.service(name or key, body, service_path, base)
            if name is not None and service is not None:
                out[name] = service
        return out

    def service(self, name: str, value: Any, path: Path, base: _Inherited) -> Service | None:
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping with checks, got {_type_name(value)}")
            return None
        keys = ("description", "role", "scope", "interval", "timeout", "resolver", "checks")
        body = self.mapping(value, path, keys)
        description = body.get("description")
        if description is None:
            description = ""
        elif not isinstance(description, str):
            description = self.text((*path, "description"), description)
            if description is None:
                self.error(
                    (*path, "description"), f"must be text, got {_type_name(body['description'])}"
                )
                description = ""
        inherited = self.inherit(body, path, base)
        checks_path = (*path, "checks")
        raw_checks = self.listing(body.get("checks"), checks_path)
        if not raw_checks and isinstance(body.get("checks"), list | None):
            self.error(checks_path, "at least one check is required")
        checks: list[Check] = []
        seen: dict[str, int] = {}
        for raw, check_path in raw_checks:
            check = _CheckBuilder(self, name, check_path, inherited).build(raw)
            name_path = (*check_path, "name")
            check_name = self.text(name_path, raw.get("name")) if isinstance(raw, dict) else None
            if check_name:
                if check_name in seen:
                    first = seen[check_name]
                    self.error(
                        name_path,
                        f"duplicate check name {shown(check_name)} (also checks[{first}])",
                    )
                    continue
                seen[check_name] = int(check_path[-1])
            if check is not None:
                checks.append(check)
        return Service(
            name=name,
            description=description,
            role=self.choice(body.get("role"), (*path, "role"), ROLES, "service"),
            scope=self.choice(body.get("scope"), (*path, "scope"), SCOPES, "foreign"),
            checks=tuple(checks),
        )


# Every kind but dns resolves a host and connects to it; dns names its resolvers itself.
CONNECT_KEYS = ("resolver", "address", "ip_version")
COMMON_KEYS = ("name", "kind", "target", "interval", "timeout")
KIND_KEYS: dict[str, tuple[str, ...]] = {
    "dns": (*COMMON_KEYS, "resolvers", "control", "record", "expect_cidrs"),
    "tcp": (*COMMON_KEYS, *CONNECT_KEYS),
    "tls": (*COMMON_KEYS, *CONNECT_KEYS, "sni", "control_sni", "verify", "fingerprints"),
    "http": (*COMMON_KEYS, *CONNECT_KEYS, "method", "expect_status", "follow_redirects",
             "max_body", "proxy", "verify"),
    "transfer": (*COMMON_KEYS, *CONNECT_KEYS, "min_bytes", "min_rate", "stall_timeout",
                 "expect_status", "follow_redirects", "proxy", "verify", "direction"),
    "stun": (*COMMON_KEYS, *CONNECT_KEYS),
    "quic": (*COMMON_KEYS, *CONNECT_KEYS, "sni", "verify"),
}  # fmt: skip
ALL_CHECK_KEYS = tuple(dict.fromkeys(key for keys in KIND_KEYS.values() for key in keys))


def _misplaced_check_key(kind: str) -> Callable[[str], str | None]:
    """Messages for keys that belong to other kinds of check."""

    def message(key: str) -> str | None:
        if kind == "dns" and key == "resolver":
            return "does not apply to dns checks: list the resolvers to query in `resolvers`"
        if kind == "dns" and key in CONNECT_KEYS:
            return "does not apply to dns checks"
        kinds = [k for k, keys in KIND_KEYS.items() if key in keys]
        if not kinds:
            return None
        return f"does not apply to {kind} checks (only to {', '.join(kinds)})"

    return message


class _CheckBuilder:
    def __init__(self, parent: _Builder, service: str, path: Path, inherited: _Inherited) -> None:
        self.p = parent
        self.service = service
        self.path = path
        self.inherited = inherited

    def at(self, key: str) -> Path:
        return (*self.path, key)

    def build(self, raw: Any) -> Check | None:
        if not isinstance(raw, dict):
            self.p.error(
                self.path, f"a check must be a mapping (name, kind, target), got {_type_name(raw)}"
            )
            return None
        kind = self.p.text(self.at("kind"), raw.get("kind"))
        if kind not in KINDS:
            if raw.get("kind") is None:
                self.p.error(self.at("kind"), f"is required (one of {', '.join(KINDS)})")
            else:
                written = kind if kind is not None else raw["kind"]
                self.p.error(
                    self.at("kind"),
                    f"unsupported kind {shown(written)} (supported: {', '.join(KINDS)})",
                )
            body = self.p.mapping(raw, self.path, ALL_CHECK_KEYS)
            self.p.name(body.get("name"), self.at("name"), "check")
            return None
        body = self.p.mapping(raw, self.path, KIND_KEYS[kind], _misplaced_check_key(kind))
        name = self.p.name(body.get("name"), self.at("name"), "check")
        target = self.target(kind, body.get("target"))
        inherited = self.p.inherit(
            {k: v for k, v in body.items() if k in ("interval", "timeout", "resolver")},
            self.path,
            self.inherited,
        )
        ip_version = self.ip_version(body.get("ip_version"))
        address = self.addresses(body.get("address"), ip_version)
        if target is not None and ip_version:
            self.check_family(target[0], ip_version)
        options = self.options(kind, body, target[0] if target else "", inherited)
        if name is None or target is None:
            return None
        return Check(
            service=self.service,
            name=name,
            kind=kind,
            target=str(body["target"]),
            host=target[0],
            port=target[1],
            interval=inherited.interval,
            timeout=inherited.timeout,
            resolver=inherited.resolver,
            address=address,
            ip_version=ip_version,
            options=options,
        )

    def target(self, kind: str, target: Any) -> tuple[str, int] | None:
        path = self.at("target")
        if target is None:
            self.p.error(path, "is required")
            return None
        if not isinstance(target, str) or not target:
            self.p.error(path, f"must be a non-empty string, got {_type_name(target)}")
            return None
        if kind == "dns":
            host = _host(target, ip_ok=False)
            if host is None:
                self.p.error(path, f"invalid domain name {shown(target)}")
                return None
            return host.rstrip("."), 0
        if kind in URL_KINDS:
            return self.url_target(target, path)
        return self.host_port_target(kind, target, path)

    def url_target(self, target: str, path: Path) -> tuple[str, int] | None:
        parsed = _urlsplit(target)
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
            self.p.error(path, f"invalid URL {shown(target)}: expected http:// or https://host/...")
            return None
        host = _host(parsed.hostname)
        if host is None:
            self.p.error(path, f"invalid URL {shown(target)}: bad host {shown(parsed.hostname)}")
            return None
        port = _url_port(parsed, 443 if parsed.scheme == "https" else 80)
        if port is None:
            self.p.error(path, f"invalid URL {shown(target)}: port must be 1-65535")
            return None
        return host, port

    def host_port_target(self, kind: str, target: str, path: Path) -> tuple[str, int] | None:
        host_text, port_text = _split_host_port(target)
        default_port = HOST_PORT_DEFAULTS[kind]
        host = _host(host_text) if host_text else None
        if host is None:
            example = "host:port" if default_port is None else "host or host:port"
            problem = f"bad host {shown(host_text)}" if host_text else f"expected {example}"
            self.p.error(path, f"invalid target {shown(target)}: {problem}")
            return None
        if port_text is None:
            if default_port is None:
                self.p.error(
                    path, f"invalid target {shown(target)}: a port is required (host:port)"
                )
                return None
            return host, default_port
        port = _port(port_text)
        if port is None:
            self.p.error(path, f"invalid target {shown(target)}: port must be 1-65535")
            return None
        return host, port

    def addresses(self, value: Any, ip_version: int) -> tuple[str, ...]:
        if value is None:
            return ()
        path = self.at("address")
        items = self.p.listing(value, path, scalar_ok=True)
        if not items and isinstance(value, list):
            self.p.error(path, "must list at least one IP address (or be left out)")
        out = []
        for item, item_path in items:
            try:
                address = ipaddress.ip_address(item) if isinstance(item, str) else None
            except ValueError:
                address = None
            if address is None:
                self.p.error(item_path, f"invalid IP address {shown(item)}")
            elif ip_version and address.version != ip_version:
                self.p.error(item_path, f"{item} is not IPv{ip_version} (ip_version: {ip_version})")
            else:
                out.append(str(address))
        return tuple(out)

    def check_family(self, host: str, ip_version: int) -> None:
        try:
            version = ipaddress.ip_address(host).version
        except ValueError:
            return
        if version != ip_version:
            self.p.error(
                self.at("ip_version"), f"the target {host} is not an IPv{ip_version} address"
            )

    def ip_version(self, value: Any) -> int:
        if value is None:
            return 0
        text = self.p.text(self.at("ip_version"), value)
        if text == "any":
            return 0
        if text in ("4", "6"):
            return int(text)
        self.p.error(self.at("ip_version"), f"must be 4, 6 or any, got {shown(value)}")
        return 0

    def options(self, kind: str, body: dict[str, Any], host: str, inherited: _Inherited) -> Options:
        if kind == "dns":
            return self.dns_options(body)
        verify = self.p.boolean(body.get("verify"), self.at("verify"), True)
        if kind == "tls":
            sni = self.server_name(body.get("sni"), "sni") or host
            control_sni = self.server_name(body.get("control_sni"), "control_sni")
            if control_sni is not None and control_sni == sni:
                self.p.error(self.at("control_sni"), f"must differ from the SNI {shown(sni)}")
            return TlsOptions(
                sni=sni,
                control_sni=control_sni,
                verify=verify,
                fingerprints=self.fingerprints(body.get("fingerprints")),
            )
        if kind == "quic":
            return QuicOptions(sni=self.server_name(body.get("sni"), "sni") or host, verify=verify)
        if kind == "http":
            return HttpOptions(
                method=self.p.choice(body.get("method"), self.at("method"), METHODS, "GET"),
                expect_status=self.expect_status(body.get("expect_status")),
                follow_redirects=self.follow_redirects(body),
                max_body=self.size(body, "max_body", DEFAULT_MAX_BODY),
                proxy=self.proxy(body.get("proxy")),
                verify=verify,
            )
        if kind == "transfer":
            direction = self.p.choice(
                body.get("direction"), self.at("direction"), DIRECTIONS, DIRECTION_DOWNLOAD
            )
            expect_status = self.expect_status(body.get("expect_status"))
            if direction == DIRECTION_UPLOAD and body.get("proxy") is not None:
                # What a proxy acknowledges says nothing of what reached the target.
                self.p.error(self.at("proxy"), "an upload measures the target's own ACKs: no proxy")
            if direction == DIRECTION_UPLOAD and body.get("expect_status") is None:
                # After an upload any answer proves the body got through (README).
                expect_status = ANY_STATUS
            return TransferOptions(
                min_bytes=self.size(body, "min_bytes", DEFAULT_MIN_BYTES),
                min_rate=self.rate(body.get("min_rate")),
                stall_timeout=self.stall_timeout(body, inherited),
                expect_status=expect_status,
                follow_redirects=self.follow_redirects(body),
                proxy=self.proxy(body.get("proxy")),
                verify=verify,
                direction=direction,
            )
        return None

    def fingerprints(self, value: Any) -> tuple[str, ...]:
        path = self.at("fingerprints")
        out: list[str] = []
        for item, item_path in self.p.listing(value, path):
            if item not in FINGERPRINTS:
                self.p.error(
                    item_path,
                    f"unknown fingerprint {shown(item)}: expected one of {', '.join(FINGERPRINTS)}",
                )
            elif item not in out:
                out.append(item)
        return tuple(out)

    def follow_redirects(self, body: dict[str, Any]) -> bool:
        return self.p.boolean(body.get("follow_redirects"), self.at("follow_redirects"), True)

    def stall_timeout(self, body: dict[str, Any], inherited: _Inherited) -> float:
        default = min(DEFAULT_STALL_TIMEOUT, inherited.timeout / 2)
        stall = self.p.duration(body, self.path, "stall_timeout")
        if stall is None:
            return default
        if inherited.timeout_ok and stall >= inherited.timeout:
            self.p.error(
                self.at("stall_timeout"),
                f"must be shorter than the timeout ({format_duration(inherited.timeout)})",
            )
        return stall

    def size(self, body: dict[str, Any], key: str, default: int) -> int:
        if key not in body:
            return default
        value = self.p.convert(body[key], self.at(key), parse_size)
        return default if value is None else int(value)

    def rate(self, value: Any) -> float | None:
        if value is None:
            return None
        rate = self.p.convert(value, self.at("min_rate"), parse_rate)
        return None if rate is None else float(rate)

    def server_name(self, value: Any, key: str) -> str | None:
        if value is None:
            return None
        host = _host(value, ip_ok=False) if isinstance(value, str) else None
        if host is None:
            self.p.error(self.at(key), f"invalid server name {shown(value)}: expected a host name")
        return host

    def proxy(self, value: Any) -> str | None:
        if value is None:
            return None
        expected = "expected socks5://host:port or http://host:port"
        parsed = _urlsplit(value)
        if parsed is None or parsed.scheme not in PROXY_SCHEMES or not parsed.hostname:
            self.p.error(self.at("proxy"), f"invalid proxy {shown(value)}: {expected}")
            return None
        if _host(parsed.hostname) is None or parsed.path not in ("", "/") or parsed.query:
            self.p.error(self.at("proxy"), f"invalid proxy {shown(value)}: {expected}")
            return None
        try:
            port = parsed.port
        except ValueError:
            port = 0
        if port is None:
            self.p.error(self.at("proxy"), f"invalid proxy {shown(value)}: {expected}")
            return None
        if not 1 <= port <= 65535:
            self.p.error(self.at("proxy"), f"invalid proxy {shown(value)}: port must be 1-65535")
            return None
        return str(value)

    def expect_status(self, value: Any) -> tuple[tuple[int, int], ...]:
        if value is None:
            return DEFAULT_EXPECT_STATUS
        path = self.at("expect_status")
        items = self.p.listing(value, path, scalar_ok=True)
        if not items and isinstance(value, list):
            self.p.error(path, "must list at least one status code or range (or be left out)")
        out = []
        for item, item_path in items:
            parsed = _parse_status(item)
            if parsed is None:
                self.p.error(
                    item_path,
                    f"invalid status {shown(item)}: expected a code or a range of codes "
                    "between 100 and 599, e.g. 200 or 200-399",
                )
            else:
                out.append(parsed)
        return tuple(out) or DEFAULT_EXPECT_STATUS

    def dns_options(self, body: dict[str, Any]) -> DnsOptions:
        known = self.p.resolver_names
        control = body.get("control")
        control_path = self.at("control")
        if control is None:
            control_name = CONTROL_RESOLVER if CONTROL_RESOLVER in known else None
        elif self.p.text(control_path, control) == NO_CONTROL:
            control_name = None
        else:
            control_name = self.p.resolver_ref(control, control_path, "") or None
        names: list[str] = []
        listed = body.get("resolvers")
        if listed is None:
            names = [SYSTEM_RESOLVER]
            if control_name and control_name != SYSTEM_RESOLVER:
                names.append(control_name)
        else:
            items = self.p.listing(listed, self.at("resolvers"))
            if not items and isinstance(listed, list):
                self.p.error(self.at("resolvers"), "must list at least one resolver")
            for item, item_path in items:
                ref = self.p.resolver_ref(item, item_path, "")
                if ref in names:
                    self.p.error(item_path, f"resolver {shown(ref)} is listed twice")
                elif ref:
                    names.append(ref)
        record = self.p.choice(body.get("record"), self.at("record"), RECORDS, "A")
        family = 4 if record == "A" else 6
        cidrs = []
        for cidr, item_path in self.p.listing(body.get("expect_cidrs"), self.at("expect_cidrs")):
            network = self.p.convert(cidr, item_path, _parse_cidr)
            if network is not None and network.version != family:
                self.p.error(
                    item_path,
                    f"{network} is IPv{network.version}; record {record} answers are IPv{family}",
                )
            elif network is not None:
                cidrs.append(network)
        return DnsOptions(tuple(names), control_name, record, tuple(cidrs))


def _urlsplit(value: Any) -> urllib.parse.SplitResult | None:
    """`value` split as a URL, or None. Whitespace and control characters are refused: the
    URL parser would silently drop some of them."""
    if not isinstance(value, str) or any(ch.isspace() or not ch.isprintable() for ch in value):
        return None
    try:
        return urllib.parse.urlsplit(value)
    except ValueError:
        return None


def _url_port(parsed: urllib.parse.SplitResult, default: int) -> int | None:
    """The URL's port, `default` when it gives none, None when it is not 1-65535."""
    try:
        port = parsed.port
    except ValueError:
        return None
    if port is None:
        return default
    return port if 1 <= port <= 65535 else None


def _port(text: str) -> int | None:
    if not re.fullmatch(r"[0-9]{1,5}", text):
        return None
    port = int(text)
    return port if 1 <= port <= 65535 else None


def _split_host_port(target: str) -> tuple[str, str | None]:
    if target.startswith("["):
        host, sep, rest = target[1:].partition("]")
        if not sep or ":" not in host:  # brackets are for IPv6 literals only
            return "", None
        if not rest:
            return host, None
        return (host, rest[1:]) if rest.startswith(":") else ("", None)
    if target.count(":") == 1:
        host, _, port = target.partition(":")
        return host, port
    return target, None  # a bare name, or a bare IPv6 literal


def _host(text: str, *, ip_ok: bool = True) -> str | None:
    """A valid host: an IP literal (normalised; only with `ip_ok`) or a DNS name, non-ASCII
    names as their IDNA A-label; None if it is neither."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        return str(address) if ip_ok else None
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if not HOSTNAME_RE.fullmatch(text):
        return None
    # A name whose last label is all digits is a mistyped IP address (RFC 3696 2).
    if text.rstrip(".").rsplit(".", 1)[-1].isdigit():
        return None
    return text


def _parse_cidr(value: Any) -> IPNetwork:
    hint = "expected a network such as 10.0.0.0/8 or fc00::/7"
    if not isinstance(value, str):
        raise ValueError(f"invalid CIDR {shown(value)}: {hint}")
    try:
        return ipaddress.ip_network(value)
    except ValueError:
        pass
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"invalid CIDR {shown(value)}: {hint}") from None
    raise ValueError(f"invalid CIDR {shown(value)}: host bits set (the network is {network})")


def _parse_status(item: Any) -> tuple[int, int] | None:
    if isinstance(item, int) and not isinstance(item, bool):
        low = high = item
    elif isinstance(item, str) and re.fullmatch(r"[0-9]{3}(-[0-9]{3})?", item):
        low_text, _, high_text = item.partition("-")
        low, high = int(low_text), int(high_text or low_text)
    else:
        return None
    if not 100 <= low <= high <= 599:
        return None
    return low, high


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing"
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    names |= {int: "a number", float: "a number"}
    return names.get(type(value), f"a {type(value).__name__}")
