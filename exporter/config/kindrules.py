"""The options of each kind of check: one parser per kind, named by its entry in the kinds
registry (exporter/kinds.py), reading that kind's keys through an OptionReader and
returning its options dataclass. Cross-key rules of one kind live with its parser."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from exporter.config.model import (
    CONTROL_RESOLVER,
    DEFAULT_EXPECT_STATUS,
    DEFAULT_MAX_BODY,
    DEFAULT_MIN_BYTES,
    DEFAULT_STALL_TIMEOUT,
    DIRECTION_DOWNLOAD,
    DIRECTION_UPLOAD,
    DIRECTIONS,
    FINGERPRINTS,
    METHODS,
    NO_CONTROL,
    PROXY_SCHEMES,
    RECORDS,
    SYSTEM_RESOLVER,
    DnsOptions,
    HttpOptions,
    Options,
    QuicOptions,
    StatusRanges,
    TlsOptions,
    TransferOptions,
)
from exporter.config.values import (
    format_duration,
    host_name,
    parse_cidr,
    parse_rate,
    parse_size,
    parse_status,
    shown,
    urlsplit,
)
from exporter.config.walker import Inherited, Path, Walker, did_you_mean

# The keys every check takes, and those of every kind that resolves and connects to its
# target (all but dns, which names its resolvers itself).
COMMON_KEYS = ("name", "kind", "target", "interval", "timeout")
CONNECT_KEYS = ("resolver", "address", "ip_version")


class OptionReader:
    """One check's keys as its kind's parser sees them: values by key, and problems located
    at the key they are about."""

    def __init__(
        self, walker: Walker, path: Path, body: dict[str, Any], host: str, inherited: Inherited
    ) -> None:
        self.walker = walker
        self.path = path
        self.body = body
        self.host = host  # the target's host ("" when the target is invalid)
        self.inherited = inherited

    def at(self, key: str) -> Path:
        return (*self.path, key)

    def get(self, key: str) -> Any:
        return self.body.get(key)

    def error(self, key: str, message: str) -> None:
        self.walker.error(self.at(key), message)

    def boolean(self, key: str, default: bool) -> bool:
        return self.walker.boolean(self.get(key), self.at(key), default)

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        return self.walker.choice(self.get(key), self.at(key), choices, default)

    def size(self, key: str, default: int) -> int:
        if key not in self.body:
            return default
        value = self.walker.convert(self.body[key], self.at(key), parse_size)
        return default if value is None else int(value)

    def rate(self, key: str) -> float | None:
        if self.get(key) is None:
            return None
        rate = self.walker.convert(self.get(key), self.at(key), parse_rate)
        return None if rate is None else float(rate)

    def server_name(self, key: str) -> str | None:
        value = self.get(key)
        if value is None:
            return None
        host = host_name(value, ip_ok=False) if isinstance(value, str) else None
        if host is None:
            self.error(key, f"invalid server name {shown(value)}: expected a host name")
        return host

    def names(self, key: str, known: tuple[str, ...], what: str) -> tuple[str, ...]:
        """A list of names from `known`, each at most once (default: none)."""
        out: list[str] = []
        for item, item_path in self.walker.listing(self.get(key), self.at(key)):
            text = self.walker.text(item_path, item)
            if text is None or text not in known:
                written = shown(text if text is not None else item)
                hint = did_you_mean(text or "", known, "known")
                self.walker.error(item_path, f"unknown {what} {written} ({hint})")
            elif text in out:
                self.walker.error(item_path, f"{what} {shown(text)} is listed twice")
            else:
                out.append(text)
        return tuple(out)

    def proxy(self) -> str | None:
        value = self.get("proxy")
        if value is None:
            return None
        invalid = f"invalid proxy {shown(value)}"
        expected = f"{invalid}: expected socks5://host:port or http://host:port"
        parsed = urlsplit(value)
        if parsed is None or parsed.scheme not in PROXY_SCHEMES or not parsed.hostname:
            self.error("proxy", expected)
            return None
        if host_name(parsed.hostname) is None or parsed.path not in ("", "/") or parsed.query:
            self.error("proxy", expected)
            return None
        try:
            port = parsed.port
        except ValueError:
            port = 0
        if port is None:
            self.error("proxy", expected)
            return None
        if not 1 <= port <= 65535:
            self.error("proxy", f"{invalid}: port must be 1-65535")
            return None
        return str(value)

    def expect_status(self) -> StatusRanges | None:
        """The ranges listed under `expect_status`, None when it is left out."""
        value = self.get("expect_status")
        if value is None:
            return None
        path = self.at("expect_status")
        items = self.walker.listing(value, path, scalar_ok=True)
        if not items and isinstance(value, list):
            self.error(
                "expect_status", "must list at least one status code or range (or be left out)"
            )
        out = []
        for item, item_path in items:
            parsed = parse_status(item)
            if parsed is None:
                self.walker.error(
                    item_path,
                    f"invalid status {shown(item)}: expected a code or a range of codes "
                    "between 100 and 599, e.g. 200 or 200-399",
                )
            else:
                out.append(parsed)
        return tuple(out) or DEFAULT_EXPECT_STATUS

    def stall_timeout(self) -> float:
        inherited = self.inherited
        default = min(DEFAULT_STALL_TIMEOUT, inherited.timeout / 2)
        stall = self.walker.duration(self.body, self.path, "stall_timeout")
        if stall is None:
            return default
        if inherited.timeout_ok and stall >= inherited.timeout:
            self.error(
                "stall_timeout",
                f"must be shorter than the timeout ({format_duration(inherited.timeout)})",
            )
        return stall


OptionsParser = Callable[[OptionReader], Options]


def dns_options(r: OptionReader) -> DnsOptions:
    walker = r.walker
    known = walker.resolver_names
    control = r.get("control")
    if control is None:
        control_name = CONTROL_RESOLVER if CONTROL_RESOLVER in known else None
    elif walker.text(r.at("control"), control) == NO_CONTROL:
        control_name = None
    else:
        control_name = walker.resolver_ref(control, r.at("control"), "") or None
    names: list[str] = []
    listed = r.get("resolvers")
    if listed is None:
        names = [SYSTEM_RESOLVER]
        if control_name and control_name != SYSTEM_RESOLVER:
            names.append(control_name)
    else:
        items = walker.listing(listed, r.at("resolvers"))
        if not items and isinstance(listed, list):
            r.error("resolvers", "must list at least one resolver")
        for item, item_path in items:
            ref = walker.resolver_ref(item, item_path, "")
            if ref in names:
                walker.error(item_path, f"resolver {shown(ref)} is listed twice")
            elif ref:
                names.append(ref)
    record = r.choice("record", RECORDS, "A")
    family = 4 if record == "A" else 6
    cidrs = []
    for cidr, item_path in walker.listing(r.get("expect_cidrs"), r.at("expect_cidrs")):
        network = walker.convert(cidr, item_path, parse_cidr)
        if network is not None and network.version != family:
            walker.error(
                item_path,
                f"{network} is IPv{network.version}; record {record} answers are IPv{family}",
            )
        elif network is not None:
            cidrs.append(network)
    return DnsOptions(tuple(names), control_name, record, tuple(cidrs))


def tls_options(r: OptionReader) -> TlsOptions:
    sni = r.server_name("sni") or r.host
    control_sni = r.server_name("control_sni")
    if control_sni is not None and control_sni == sni:
        r.error("control_sni", f"must differ from the SNI {shown(sni)}")
    return TlsOptions(
        sni=sni,
        control_sni=control_sni,
        verify=r.boolean("verify", True),
        fingerprints=r.names("fingerprints", FINGERPRINTS, "fingerprint"),
    )


def http_options(r: OptionReader) -> HttpOptions:
    return HttpOptions(
        method=r.choice("method", METHODS, "GET"),
        expect_status=r.expect_status() or DEFAULT_EXPECT_STATUS,
        follow_redirects=r.boolean("follow_redirects", True),
        max_body=r.size("max_body", DEFAULT_MAX_BODY),
        proxy=r.proxy(),
        verify=r.boolean("verify", True),
    )


def transfer_options(r: OptionReader) -> TransferOptions:
    direction = r.choice("direction", DIRECTIONS, DIRECTION_DOWNLOAD)
    expect_status = r.expect_status()
    if expect_status is None and direction == DIRECTION_DOWNLOAD:
        # An upload judges what the peer acknowledged; its answer only counts when asked to.
        expect_status = DEFAULT_EXPECT_STATUS
    proxy = r.proxy()
    if direction == DIRECTION_UPLOAD and proxy is not None:
        # What a proxy acknowledges says nothing of what reached the target.
        r.error("proxy", "an upload measures the target's own ACKs: no proxy")
    return TransferOptions(
        min_bytes=r.size("min_bytes", DEFAULT_MIN_BYTES),
        min_rate=r.rate("min_rate"),
        stall_timeout=r.stall_timeout(),
        expect_status=expect_status,
        follow_redirects=r.boolean("follow_redirects", True),
        proxy=proxy,
        verify=r.boolean("verify", True),
        direction=direction,
    )


def quic_options(r: OptionReader) -> QuicOptions:
    return QuicOptions(sni=r.server_name("sni") or r.host, verify=r.boolean("verify", True))
