"""One check of the configuration, driven by the kinds registry: which keys its kind allows
(with a hint for keys of another kind), its target in the kind's form, the connection
settings every connecting kind shares, then the kind's own options parser."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from exporter.config.kindrules import CONNECT_KEYS, OptionReader
from exporter.config.model import Check
from exporter.config.values import parse_target, shown, type_name
from exporter.config.walker import Inherited, Path, Walker

if TYPE_CHECKING:
    from exporter.kinds import Kind


def _registry() -> Mapping[str, Kind]:
    # Imported when a check is built, not with this package: the registry imports the
    # probes, and they import this package's model.
    from exporter.kinds import REGISTRY

    return REGISTRY


def _every_check_key() -> tuple[str, ...]:
    return tuple(dict.fromkeys(key for kind in _registry().values() for key in kind.keys))


def _misplaced_key(kind: Kind) -> Callable[[str], str | None]:
    """Messages for keys that belong to other kinds of check."""

    def message(key: str) -> str | None:
        if key in CONNECT_KEYS and not kind.connects:
            problem = f"does not apply to {kind.name} checks"
        else:
            owners = [other.name for other in _registry().values() if key in other.keys]
            if not owners:
                return None
            problem = f"does not apply to {kind.name} checks (only to {', '.join(owners)})"
        hint = kind.key_hints.get(key)
        return f"{problem}: {hint}" if hint else problem

    return message


class CheckBuilder:
    def __init__(self, walker: Walker, service: str, path: Path, inherited: Inherited) -> None:
        self.p = walker
        self.service = service
        self.path = path
        self.inherited = inherited

    def at(self, key: str) -> Path:
        return (*self.path, key)

    def build(self, raw: Any) -> Check | None:
        if not isinstance(raw, dict):
            self.p.error(
                self.path, f"a check must be a mapping (name, kind, target), got {type_name(raw)}"
            )
            return None
        kind_name = self.p.text(self.at("kind"), raw.get("kind"))
        registry = _registry()
        kind = registry.get(kind_name) if kind_name is not None else None
        if kind is None:
            supported = ", ".join(registry)
            if raw.get("kind") is None:
                self.p.error(self.at("kind"), f"is required (one of {supported})")
            else:
                written = kind_name if kind_name is not None else raw["kind"]
                self.p.error(
                    self.at("kind"), f"unsupported kind {shown(written)} (supported: {supported})"
                )
            body = self.p.mapping(raw, self.path, _every_check_key())
            self.p.name(body.get("name"), self.at("name"), "check")
            return None
        body = self.p.mapping(raw, self.path, kind.keys, _misplaced_key(kind))
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
        options = None
        if kind.parse_options is not None:
            host = target[0] if target else ""
            reader = OptionReader(self.p, self.path, body, host, inherited)
            options = kind.parse_options(reader)
        if name is None or target is None:
            return None
        return Check(
            service=self.service,
            name=name,
            kind=kind.name,
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

    def target(self, kind: Kind, target: Any) -> tuple[str, int] | None:
        path = self.at("target")
        if target is None:
            self.p.error(path, "is required")
            return None
        if not isinstance(target, str) or not target:
            self.p.error(path, f"must be a non-empty string, got {type_name(target)}")
            return None
        parsed: tuple[str, int] | None = self.p.convert(
            target, path, lambda text: parse_target(kind.target, text, kind.default_port)
        )
        return parsed

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
