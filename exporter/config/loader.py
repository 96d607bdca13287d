"""Loading the configuration: read the file, parse the YAML with positions, and walk every
section (defaults, resolvers, blockpages, bogons, services and their checks), reporting every
problem at once as FILE:LINE: key.path: message."""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from typing import Any

from exporter import safefile
from exporter.config import yamlsource
from exporter.config.checks import CheckBuilder
from exporter.config.model import (
    DEFAULT_BOGONS,
    DEFAULT_INTERVAL,
    DEFAULT_TIMEOUT,
    DOH_DEFAULT_PATH,
    NO_CONTROL,
    RESOLVER_SCHEMES,
    ROLES,
    SCOPES,
    SYSTEM_RESOLVER,
    Check,
    Config,
    IPNetwork,
    ResolverSpec,
    Service,
)
from exporter.config.values import host_name, parse_cidr, shown, type_name, url_port, urlsplit
from exporter.config.walker import Inherited, Path, Walker
from exporter.errors import ConfigError, Problem

TOP_LEVEL_KEYS = ("defaults", "resolvers", "blockpages", "bogons", "services")
DEFAULTS_KEYS = ("interval", "timeout", "resolver", "ca_file")
SERVICE_KEYS = ("description", "role", "scope", "interval", "timeout", "resolver", "checks")


def load_file(path: str) -> Config:
    """Read and validate `path`; raises ConfigError listing every problem. Relative paths in
    the file (`ca_file`) are relative to the file's directory, as in Prometheus."""
    try:
        data = safefile.read_bounded(path)
    except (safefile.FileReadError, ValueError) as exc:
        # ValueError: a path with a NUL byte.
        raise ConfigError(path, [Problem(0, "", f"cannot read configuration: {exc}")]) from None
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
    builder = _Loader(doc, path, base_dir)
    config = builder.build()
    if builder.problems or config is None:
        raise ConfigError(path, builder.problems)
    return config


class _Loader(Walker):
    """The walk over the sections of one configuration file."""

    def __init__(self, doc: yamlsource.Located, path: str, base_dir: str) -> None:
        super().__init__(doc)
        self.path = path
        self.base_dir = base_dir

    def build(self) -> Config | None:
        data = self.doc.data
        if data is not None and not isinstance(data, dict):
            self.error(
                (),
                "the configuration must be a mapping of defaults, resolvers, blockpages, "
                f"bogons and services, got {type_name(data)}",
            )
            return None
        top = self.mapping(data, (), TOP_LEVEL_KEYS)
        defaults = self.mapping(top.get("defaults"), ("defaults",), DEFAULTS_KEYS)
        self.resolver_names = self.resolvers(top.get("resolvers"))
        blockpages = self.blockpages(top.get("blockpages"))
        bogons = self.bogons(top.get("bogons"))
        ca_file = self.ca_file(defaults.get("ca_file"))
        base = self.inherit(
            defaults,
            ("defaults",),
            Inherited(DEFAULT_INTERVAL, DEFAULT_TIMEOUT, SYSTEM_RESOLVER),
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
            self.error(path, f"must be the path of a PEM file, got {type_name(value)}")
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
            self.error(("resolvers",), f"must be a mapping of name: URL, got {type_name(value)}")
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
        parsed = urlsplit(url)
        if parsed is None or parsed.scheme not in RESOLVER_SCHEMES or not parsed.hostname:
            self.error(path, f"invalid resolver {shown(url)}: {expected}")
            return None
        host = host_name(parsed.hostname)
        if host is None or parsed.username is not None or parsed.password is not None:
            self.error(path, f"invalid resolver {shown(url)}: bad host {shown(parsed.hostname)}")
            return None
        port = url_port(parsed, RESOLVER_SCHEMES[parsed.scheme])
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
                self.error(path, f"must be a regular expression string, got {type_name(pattern)}")
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
            network = self.convert(cidr, item_path, parse_cidr)
            if network is not None:
                out.append(network)
        return tuple(out)

    def services(self, value: Any, base: Inherited) -> dict[str, Service]:
        path: Path = ("services",)
        if not isinstance(value, dict):
            if value is None:
                self.error(path, "at least one service is required")
            else:
                self.error(path, f"must be a mapping of name: service, got {type_name(value)}")
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

    def service(self, name: str, value: Any, path: Path, base: Inherited) -> Service | None:
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping with checks, got {type_name(value)}")
            return None
        body = self.mapping(value, path, SERVICE_KEYS)
        description = body.get("description")
        if description is None:
            description = ""
        elif not isinstance(description, str):
            description = self.text((*path, "description"), description)
            if description is None:
                self.error(
                    (*path, "description"), f"must be text, got {type_name(body['description'])}"
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
            check = CheckBuilder(self, name, check_path, inherited).build(raw)
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
