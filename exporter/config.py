"""The configuration: frozen dataclasses, their defaults as named constants, and a loader that
validates the whole file and reports every problem at once as FILE:LINE: key.path: message."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import ssl
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

from exporter import yamlsource
from exporter.errors import ConfigError, Problem
from exporter.units import UnitError, format_duration, parse_duration, parse_rate, parse_size

DEFAULT_INTERVAL = 60.0
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_BODY = 1024 * 1024
DEFAULT_MIN_BYTES = 64 * 1024
DEFAULT_STALL_TIMEOUT = 5.0
DEFAULT_EXPECT_STATUS = ((200, 399),)
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

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]*")
HOSTNAME_RE = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)"
    r"(\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?"
)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclasses.dataclass(frozen=True)
class ResolverSpec:
    """A DNS resolver: `system` (the nameservers of /etc/resolv.conf), or plain DNS over UDP
    or TCP, DNS over TLS, DNS over HTTPS."""

    name: str
    scheme: str  # system | udp | tcp | tls | https
    host: str = ""
    port: int = 0
    url: str = ""


@dataclasses.dataclass(frozen=True)
class DnsOptions:
    resolvers: tuple[str, ...]
    control: str | None  # None: no comparison
    record: str  # A | AAAA
    expect_cidrs: tuple[IPNetwork, ...]


@dataclasses.dataclass(frozen=True)
class TlsOptions:
    sni: str
    control_sni: str | None
    verify: bool


@dataclasses.dataclass(frozen=True)
class HttpOptions:
    method: str
    expect_status: tuple[tuple[int, int], ...]
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
    host: str  # name or IP literal to resolve/connect to (for dns: the name queried)
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
    ca_file: str | None
    services: dict[str, Service]
    path: str = ""

    def checks(self) -> Iterator[Check]:
        for service in self.services.values():
            yield from service.checks

    @property
    def control_resolver(self) -> str | None:
        return CONTROL_RESOLVER if CONTROL_RESOLVER in self.resolvers else None


def load_file(path: str) -> Config:
    """Read and validate `path`; raises ConfigError listing every problem."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [Problem(0, "", f"cannot read configuration: {exc}")]) from None
    return load_text(text, path)


def load_text(text: str, path: str = "config.yaml") -> Config:
    try:
        doc = yamlsource.load(text)
    except yamlsource.YamlSyntaxError as exc:
        raise ConfigError(path, [Problem(exc.line, "", exc.message)]) from None
    builder = _Builder(doc, path)
    config = builder.build()
    if builder.problems or config is None:
        raise ConfigError(path, builder.problems)
    return config


Path = tuple[str | int, ...]


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


class _Builder:
    """Walks the parsed YAML once, collecting problems instead of stopping at the first."""

    def __init__(self, doc: yamlsource.Located, path: str) -> None:
        self.doc = doc
        self.path = path
        self.problems: list[Problem] = []

    def error(self, path: Path, message: str) -> None:
        self.problems.append(Problem(self.doc.line_of(path), _dotted(path), message))

    # -- generic shape checks ---------------------------------------------------------------

    def mapping(self, value: Any, path: Path, allowed: tuple[str, ...]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping, got {_type_name(value)}")
            return {}
        for key in value:
            if key not in allowed:
                self.error((*path, str(key)), f"unknown key (allowed: {', '.join(allowed)})")
        return {k: v for k, v in value.items() if k in allowed}

    def listing(self, value: Any, path: Path) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, f"must be a list, got {_type_name(value)}")
            return []
        return value

    def convert(self, value: Any, path: Path, parse: Callable[[Any], Any]) -> Any:
        try:
            return parse(value)
        except (UnitError, ValueError) as exc:
            self.error(path, str(exc))
            return None

    def string(self, value: Any, path: Path) -> str | None:
        if not isinstance(value, str) or not value:
            self.error(path, f"must be a non-empty string, got {_type_name(value)}")
            return None
        return value

    def boolean(self, value: Any, path: Path, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(path, f"must be true or false, got {value!r}")
            return default
        return value

    def choice(self, value: Any, path: Path, choices: tuple[str, ...], default: str) -> str:
        if value is None:
            return default
        if value not in choices:
            self.error(path, f"must be one of {', '.join(choices)}, got {value!r}")
            return default
        return str(value)

    def name(self, value: Any, path: Path, what: str) -> str | None:
        if not isinstance(value, str) or not NAME_RE.fullmatch(value):
            self.error(path, f"invalid {what} name {value!r}: must match [a-z0-9][a-z0-9_-]*")
            return None
        return value

    # -- sections -----------------------------------------------------------------------------

    def build(self) -> Config | None:
        top = self.mapping(
            self.doc.data, (), ("defaults", "resolvers", "blockpages", "bogons", "services")
        )
        if not isinstance(self.doc.data, dict | None):
            return None
        defaults = self.mapping(
            top.get("defaults"), ("defaults",), ("interval", "timeout", "resolver", "ca_file")
        )
        resolvers = self.resolvers(top.get("resolvers"))
        blockpages = self.blockpages(top.get("blockpages"))
        bogons = self.bogons(top.get("bogons"))
        ca_file = self.ca_file(defaults.get("ca_file"))
        base = _Inherited(
            interval=self.duration(defaults, ("defaults",), "interval", DEFAULT_INTERVAL),
            timeout=self.duration(defaults, ("defaults",), "timeout", DEFAULT_TIMEOUT),
            resolver=self.resolver_ref(
                defaults.get("resolver"), ("defaults", "resolver"), resolvers, SYSTEM_RESOLVER
            ),
        )
        self.timeout_below_interval(defaults, ("defaults",), base.timeout, base.interval)
        services = self.services(top.get("services"), base, resolvers)
        return Config(
            resolvers=resolvers,
            blockpages=blockpages,
            bogons=bogons,
            ca_file=ca_file,
            services=services,
            path=self.path,
        )

    def duration(self, section: dict[str, Any], path: Path, key: str, default: float) -> float:
        if key not in section:
            return default
        value = self.convert(section[key], (*path, key), parse_duration)
        return default if value is None else float(value)

    def timeout_below_interval(
        self, section: dict[str, Any], path: Path, timeout: float, interval: float
    ) -> None:
        """Reported where the offending value is set, once: a bad pair in defaults is not
        repeated for every check that inherits it."""
        if timeout < interval or ("timeout" not in section and "interval" not in section):
            return
        where = "timeout" if "timeout" in section else "interval"
        self.error(
            (*path, where),
            f"timeout {format_duration(timeout)} must be shorter than "
            f"interval {format_duration(interval)}",
        )

    def ca_file(self, value: Any) -> str | None:
        path: Path = ("defaults", "ca_file")
        if value is None:
            return None
        ca_file = self.string(value, path)
        if ca_file is None:
            return None
        try:
            ssl.create_default_context().load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            self.error(path, f"cannot load CA file {ca_file!r}: {exc}")
            return None
        return os.path.abspath(ca_file)

    def resolvers(self, value: Any) -> dict[str, ResolverSpec]:
        out = {SYSTEM_RESOLVER: ResolverSpec(SYSTEM_RESOLVER, "system")}
        if value is None:
            return out
        if not isinstance(value, dict):
            self.error(("resolvers",), f"must be a mapping of name: URL, got {_type_name(value)}")
            return out
        for raw_name, url in value.items():
            path: Path = ("resolvers", str(raw_name))
            name = self.name(raw_name, path, "resolver")
            if name is None:
                continue
            if name == SYSTEM_RESOLVER:
                self.error(path, "'system' is built in (/etc/resolv.conf) and cannot be redefined")
                continue
            spec = self.resolver_url(name, url, path)
            if spec is not None:
                out[name] = spec
        return out

    def resolver_url(self, name: str, url: Any, path: Path) -> ResolverSpec | None:
        expected = "expected udp://, tcp://, tls:// or https:// URL"
        if not isinstance(url, str):
            self.error(path, f"invalid resolver {url!r}: {expected}")
            return None
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in RESOLVER_SCHEMES or not parsed.hostname:
            self.error(path, f"invalid resolver {url!r}: {expected}")
            return None
        try:
            port = parsed.port or RESOLVER_SCHEMES[parsed.scheme]
        except ValueError:
            self.error(path, f"invalid resolver {url!r}: port must be 1-65535")
            return None
        if parsed.scheme != "https" and parsed.path not in ("", "/"):
            self.error(path, f"invalid resolver {url!r}: only https:// resolvers take a path")
            return None
        if parsed.scheme == "https" and not parsed.path:
            url = url + "/dns-query"
        return ResolverSpec(name, parsed.scheme, parsed.hostname, port, url)

    def resolver_ref(
        self, value: Any, path: Path, resolvers: dict[str, ResolverSpec], default: str
    ) -> str:
        if value is None:
            return default
        if value not in resolvers:
            self.error(path, f"unknown resolver {value!r} (defined: {', '.join(resolvers)})")
            return default
        return str(value)

    def blockpages(self, value: Any) -> tuple[re.Pattern[str], ...]:
        out = []
        for i, pattern in enumerate(self.listing(value, ("blockpages",))):
            path: Path = ("blockpages", i)
            if not isinstance(pattern, str) or not pattern:
                self.error(path, f"must be a regular expression string, got {pattern!r}")
                continue
            try:
                out.append(re.compile(pattern))
            except re.error as exc:
                self.error(path, f"invalid regular expression {pattern!r}: {exc}")
        return tuple(out)

    def bogons(self, value: Any) -> tuple[IPNetwork, ...]:
        if value is None:
            return tuple(ipaddress.ip_network(cidr) for cidr in DEFAULT_BOGONS)
        return self.cidrs(value, ("bogons",))

    def cidrs(self, value: Any, path: Path) -> tuple[IPNetwork, ...]:
        out = []
        for i, cidr in enumerate(self.listing(value, path)):
            network = self.convert(str(cidr), (*path, i), _parse_cidr)
            if network is not None:
                out.append(network)
        return tuple(out)

    def services(
        self, value: Any, base: _Inherited, resolvers: dict[str, ResolverSpec]
    ) -> dict[str, Service]:
        path: Path = ("services",)
        if value is None:
            self.error(path, "at least one service is required")
            return {}
        if not isinstance(value, dict):
            self.error(
                path, f"must be a mapping of service name to service, got {_type_name(value)}"
            )
            return {}
        out = {}
        for raw_name, body in value.items():
            service_path = (*path, str(raw_name))
            name = self.name(raw_name, service_path, "service")
            service = self.service(name or str(raw_name), body, service_path, base, resolvers)
            if name is not None and service is not None:
                out[name] = service
        return out

    def service(
        self,
        name: str,
        value: Any,
        path: Path,
        base: _Inherited,
        resolvers: dict[str, ResolverSpec],
    ) -> Service | None:
        keys = ("description", "role", "scope", "interval", "timeout", "resolver", "checks")
        body = self.mapping(value, path, keys)
        if not isinstance(value, dict):
            return None
        description = body.get("description", "")
        if not isinstance(description, str):
            self.error((*path, "description"), "must be a string")
            description = ""
        inherited = _Inherited(
            interval=self.duration(body, path, "interval", base.interval),
            timeout=self.duration(body, path, "timeout", base.timeout),
            resolver=self.resolver_ref(
                body.get("resolver"), (*path, "resolver"), resolvers, base.resolver
            ),
        )
        self.timeout_below_interval(body, path, inherited.timeout, inherited.interval)
        checks_path = (*path, "checks")
        raw_checks = self.listing(body.get("checks"), checks_path)
        if not raw_checks:
            self.error(checks_path, "at least one check is required")
        checks: list[Check] = []
        seen: dict[Any, int] = {}
        for i, raw in enumerate(raw_checks):
            check = _CheckBuilder(self, name, (*checks_path, i), inherited, resolvers).build(raw)
            check_name = raw.get("name") if isinstance(raw, dict) else None
            if isinstance(check_name, str) and check_name in seen:
                self.error(
                    (*checks_path, i, "name"),
                    f"duplicate check name {check_name!r} (also checks[{seen[check_name]}])",
                )
                continue
            if isinstance(check_name, str):
                seen[check_name] = i
            if check is not None:
                checks.append(check)
        return Service(
            name=name,
            description=description,
            role=self.choice(body.get("role"), (*path, "role"), ("service", "control"), "service"),
            scope=self.choice(
                body.get("scope"), (*path, "scope"), ("foreign", "domestic"), "foreign"
            ),
            checks=tuple(checks),
        )


@dataclasses.dataclass(frozen=True)
class _Inherited:
    """Settings that flow from defaults to a service to its checks."""

    interval: float
    timeout: float
    resolver: str


COMMON_KEYS = ("name", "kind", "target", "interval", "timeout", "resolver", "address", "ip_version")
KIND_KEYS: dict[str, tuple[str, ...]] = {
    # dns checks name their resolvers themselves and query the name, not an address.
    "dns": ("name", "kind", "target", "interval", "timeout", "resolvers", "control", "record",
            "expect_cidrs"),
    "tcp": COMMON_KEYS,
    "tls": (*COMMON_KEYS, "sni", "control_sni", "verify"),
    "http": (*COMMON_KEYS, "method", "expect_status", "follow_redirects", "max_body", "proxy",
             "verify"),
    "transfer": (*COMMON_KEYS, "min_bytes", "min_rate", "stall_timeout", "expect_status",
                 "follow_redirects", "proxy", "verify"),
    "stun": COMMON_KEYS,
    "quic": (*COMMON_KEYS, "sni", "verify"),
}  # fmt: skip


class _CheckBuilder:
    def __init__(
        self,
        parent: _Builder,
        service: str,
        path: Path,
        inherited: _Inherited,
        resolvers: dict[str, ResolverSpec],
    ) -> None:
        self.p = parent
        self.service = service
        self.path = path
        self.inherited = inherited
        self.resolvers = resolvers

    def at(self, key: str) -> Path:
        return (*self.path, key)

    def build(self, raw: Any) -> Check | None:
        if not isinstance(raw, dict):
            self.p.error(self.path, f"a check must be a mapping, got {_type_name(raw)}")
            return None
        kind = raw.get("kind")
        if kind not in KINDS:
            message = "is required" if kind is None else f"unsupported kind {kind!r}"
            self.p.error(self.at("kind"), f"{message} (supported: {', '.join(KINDS)})")
            self.p.mapping(raw, self.path, tuple(k for keys in KIND_KEYS.values() for k in keys))
            return None
        body = self.p.mapping(raw, self.path, KIND_KEYS[kind])
        name = self.p.name(body.get("name"), self.at("name"), "check") if "name" in body else None
        if "name" not in body:
            self.p.error(self.at("name"), "is required")
        target = body.get("target")
        if target is None:
            self.p.error(self.at("target"), "is required")
            host_port = None
        else:
            host_port = self.target(kind, target)
        interval = self.p.duration(body, self.path, "interval", self.inherited.interval)
        timeout = self.p.duration(body, self.path, "timeout", self.inherited.timeout)
        self.p.timeout_below_interval(body, self.path, timeout, interval)
        resolver = self.p.resolver_ref(
            body.get("resolver"), self.at("resolver"), self.resolvers, self.inherited.resolver
        )
        address = self.addresses(body.get("address"))
        ip_version = self.ip_version(body.get("ip_version"))
        options = self.options(kind, body, host_port[0] if host_port else "")
        if name is None or host_port is None:
            return None
        return Check(
            service=self.service,
            name=name,
            kind=kind,
            target=str(target),
            host=host_port[0],
            port=host_port[1],
            interval=interval,
            timeout=timeout,
            resolver=resolver,
            address=address,
            ip_version=ip_version,
            options=options,
        )

    def target(self, kind: str, target: Any) -> tuple[str, int] | None:
        path = self.at("target")
        if not isinstance(target, str) or not target:
            self.p.error(path, f"must be a non-empty string, got {_type_name(target)}")
            return None
        if kind == "dns":
            if not HOSTNAME_RE.fullmatch(target):
                self.p.error(path, f"invalid domain name {target!r}")
                return None
            return target.rstrip(".") or target, 0
        if kind in URL_KINDS:
            return self.url_target(target, path)
        return self.host_port_target(kind, target, path)

    def url_target(self, target: str, path: Path) -> tuple[str, int] | None:
        parsed = urllib.parse.urlsplit(target)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            self.p.error(path, f"invalid URL {target!r}: expected http:// or https://host/...")
            return None
        try:
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
        except ValueError:
            self.p.error(path, f"invalid URL {target!r}: port must be 1-65535")
            return None
        if not _valid_host(parsed.hostname):
            self.p.error(path, f"invalid URL {target!r}: bad host {parsed.hostname!r}")
            return None
        return parsed.hostname, port

    def host_port_target(self, kind: str, target: str, path: Path) -> tuple[str, int] | None:
        host, port_text = _split_host_port(target)
        default_port = HOST_PORT_DEFAULTS[kind]
        if not host or not _valid_host(host):
            self.p.error(path, f"invalid target {target!r}: expected host:port")
            return None
        if port_text is None:
            if default_port is None:
                self.p.error(path, f"invalid target {target!r}: a port is required (host:port)")
                return None
            return host, default_port
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            self.p.error(path, f"invalid target {target!r}: port must be 1-65535")
            return None
        return host, int(port_text)

    def addresses(self, value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        items = value if isinstance(value, list) else [value]
        out = []
        for i, item in enumerate(items):
            path = self.at("address") if not isinstance(value, list) else (*self.at("address"), i)
            try:
                out.append(str(ipaddress.ip_address(str(item))))
            except ValueError:
                self.p.error(path, f"invalid IP address {item!r}")
        return tuple(out)

    def ip_version(self, value: Any) -> int:
        if value is None or value == "any":
            return 0
        if value in (4, 6) and not isinstance(value, bool):
            return int(value)
        self.p.error(self.at("ip_version"), f"must be 4, 6 or any, got {value!r}")
        return 0

    def options(self, kind: str, body: dict[str, Any], host: str) -> Options:
        if kind == "dns":
            return self.dns_options(body)
        if kind == "tls":
            return TlsOptions(
                sni=self.sni(body.get("sni"), "sni") or host,
                control_sni=self.sni(body.get("control_sni"), "control_sni"),
                verify=self.p.boolean(body.get("verify"), self.at("verify"), True),
            )
        if kind == "quic":
            return QuicOptions(
                sni=self.sni(body.get("sni"), "sni") or host,
                verify=self.p.boolean(body.get("verify"), self.at("verify"), True),
            )
        if kind == "http":
            return HttpOptions(
                method=self.p.choice(
                    body.get("method"), self.at("method"), ("GET", "HEAD", "POST"), "GET"
                ),
                expect_status=self.expect_status(body.get("expect_status")),
                follow_redirects=self.p.boolean(
                    body.get("follow_redirects"), self.at("follow_redirects"), True
                ),
                max_body=self.size(body, "max_body", DEFAULT_MAX_BODY),
                proxy=self.proxy(body.get("proxy")),
                verify=self.p.boolean(body.get("verify"), self.at("verify"), True),
            )
        if kind == "transfer":
            min_rate = body.get("min_rate")
            return TransferOptions(
                min_bytes=self.size(body, "min_bytes", DEFAULT_MIN_BYTES),
                min_rate=None
                if min_rate is None
                else self.p.convert(min_rate, self.at("min_rate"), parse_rate),
                stall_timeout=self.p.duration(
                    body,
                    self.path,
                    "stall_timeout",
                    min(DEFAULT_STALL_TIMEOUT, self.timeout_of(body) / 2),
                ),
                expect_status=self.expect_status(body.get("expect_status")),
                follow_redirects=self.p.boolean(
                    body.get("follow_redirects"), self.at("follow_redirects"), True
                ),
                proxy=self.proxy(body.get("proxy")),
                verify=self.p.boolean(body.get("verify"), self.at("verify"), True),
            )
        return None

    def timeout_of(self, body: dict[str, Any]) -> float:
        return self.p.duration({"timeout": body["timeout"]} if "timeout" in body else {}, (),
                               "timeout", self.inherited.timeout)  # fmt: skip

    def size(self, body: dict[str, Any], key: str, default: int) -> int:
        if key not in body:
            return default
        value = self.p.convert(body[key], self.at(key), parse_size)
        return default if value is None else int(value)

    def sni(self, value: Any, key: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not _valid_host(value):
            self.p.error(self.at(key), f"invalid server name {value!r}")
            return None
        return value

    def proxy(self, value: Any) -> str | None:
        if value is None:
            return None
        parsed = urllib.parse.urlsplit(value) if isinstance(value, str) else None
        if parsed is None or parsed.scheme not in ("socks5", "http") or not parsed.hostname:
            self.p.error(
                self.at("proxy"),
                f"invalid proxy {value!r}: expected socks5://host:port or http://host:port",
            )
            return None
        try:
            parsed.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            self.p.error(self.at("proxy"), f"invalid proxy {value!r}: port must be 1-65535")
            return None
        return str(value)

    def expect_status(self, value: Any) -> tuple[tuple[int, int], ...]:
        if value is None:
            return DEFAULT_EXPECT_STATUS
        path = self.at("expect_status")
        items = value if isinstance(value, list) else [value]
        out = []
        for i, item in enumerate(items):
            item_path = (*path, i) if isinstance(value, list) else path
            parsed = _parse_status(item)
            if parsed is None:
                self.p.error(
                    item_path, f"invalid status {item!r}: expected a code or range, e.g. 200-399"
                )
            else:
                out.append(parsed)
        return tuple(out) or DEFAULT_EXPECT_STATUS

    def dns_options(self, body: dict[str, Any]) -> DnsOptions:
        control = body.get("control")
        if control is None:
            control_name = CONTROL_RESOLVER if CONTROL_RESOLVER in self.resolvers else None
        elif control == NO_CONTROL:
            control_name = None
        else:
            control_name = self.p.resolver_ref(control, self.at("control"), self.resolvers, "")
            control_name = control_name or None
        listed = body.get("resolvers")
        names: list[str] = []
        if listed is None:
            names = [SYSTEM_RESOLVER] + ([control_name] if control_name else [])
        else:
            raw = self.p.listing(listed, self.at("resolvers"))
            if isinstance(listed, list) and not raw:
                self.p.error(self.at("resolvers"), "at least one resolver is required")
            for i, item in enumerate(raw):
                ref = self.p.resolver_ref(item, (*self.at("resolvers"), i), self.resolvers, "")
                if ref and ref not in names:
                    names.append(ref)
        record = self.p.choice(body.get("record"), self.at("record"), ("A", "AAAA"), "A")
        cidrs = self.p.cidrs(body.get("expect_cidrs"), self.at("expect_cidrs"))
        return DnsOptions(tuple(names), control_name, record, cidrs)


def _split_host_port(target: str) -> tuple[str, str | None]:
    if target.startswith("["):
        host, sep, rest = target[1:].partition("]")
        if not sep:
            return "", None
        if not rest:
            return host, None
        return (host, rest[1:]) if rest.startswith(":") else ("", None)
    if target.count(":") == 1:
        host, _, port = target.partition(":")
        return host, port
    return target, None  # a bare name, or a bare IPv6 literal


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(HOSTNAME_RE.fullmatch(host))


def _parse_cidr(text: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(text)
    except ValueError as exc:
        raise ValueError(f"invalid CIDR {text!r}: {exc}") from None


def _parse_status(item: Any) -> tuple[int, int] | None:
    if isinstance(item, int) and not isinstance(item, bool):
        low = high = item
    elif isinstance(item, str) and re.fullmatch(r"\d{3}(-\d{3})?", item):
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
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )
