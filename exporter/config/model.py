"""What a loaded configuration is: frozen dataclasses and their defaults as named constants.
Probes and the rest of the exporter import this module only, never the loader."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterator

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

RESOLVER_SCHEMES = {"udp": 53, "tcp": 53, "tls": 853, "https": 443}
DOH_DEFAULT_PATH = "/dns-query"
PROXY_SCHEMES = ("socks5", "http")
METHODS = ("GET", "HEAD", "POST")
RECORDS = ("A", "AAAA")
ROLES = ("service", "control")
SCOPES = ("foreign", "domestic")
DIRECTION_DOWNLOAD = "download"
DIRECTION_UPLOAD = "upload"
DIRECTIONS = (DIRECTION_DOWNLOAD, DIRECTION_UPLOAD)
# The browsers whose ClientHello a tls check can imitate (`fingerprints`).
FINGERPRINTS = ("chrome", "firefox")

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

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
StatusRanges = tuple[tuple[int, int], ...]  # inclusive ranges of status codes


@dataclasses.dataclass(frozen=True, slots=True)
class ResolverSpec:
    """A DNS resolver: `system` (the nameservers of /etc/resolv.conf), or plain DNS over UDP
    or TCP, DNS over TLS, DNS over HTTPS. `host` is a name or an IP literal (no brackets);
    DoT and DoH certificates are verified for it."""

    name: str
    scheme: str  # system | udp | tcp | tls | https
    host: str = ""
    port: int = 0
    url: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class DnsOptions:
    resolvers: tuple[str, ...]  # as listed (or the default), without duplicates
    control: str | None  # None: no comparison; queried whether `resolvers` lists it or not
    record: str  # A | AAAA
    expect_cidrs: tuple[IPNetwork, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class TlsOptions:
    sni: str
    control_sni: str | None
    verify: bool
    fingerprints: tuple[str, ...] = ()  # browser ClientHello shapes tried besides our own


@dataclasses.dataclass(frozen=True, slots=True)
class HttpOptions:
    method: str
    expect_status: StatusRanges
    follow_redirects: bool
    max_body: int
    proxy: str | None
    verify: bool


@dataclasses.dataclass(frozen=True, slots=True)
class TransferOptions:
    min_bytes: int
    min_rate: float | None  # bytes per second
    stall_timeout: float
    # None only for uploads that do not give it: after the body, any status counts.
    expect_status: StatusRanges | None
    follow_redirects: bool
    proxy: str | None
    verify: bool
    direction: str = DIRECTION_DOWNLOAD  # download | upload


@dataclasses.dataclass(frozen=True, slots=True)
class QuicOptions:
    sni: str
    verify: bool


Options = DnsOptions | TlsOptions | HttpOptions | TransferOptions | QuicOptions | None


@dataclasses.dataclass(frozen=True, slots=True)
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
    # (service, name): made once, since the store, the scheduler and the verdict history
    # each key a dict by it (a property made a new tuple for each, 1.6 MB at 10,000 checks).
    key: tuple[str, str] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.service, self.name))


@dataclasses.dataclass(frozen=True, slots=True)
class Service:
    name: str
    description: str
    role: str  # service | control
    scope: str  # foreign | domestic
    checks: tuple[Check, ...]


@dataclasses.dataclass(frozen=True, slots=True)
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
