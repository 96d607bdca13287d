"""The configuration loader: every key the README documents parsed into the right value, and every
mistake reported as FILE:LINE: key.path: message, all at once, never as a traceback."""

from __future__ import annotations

import copy
import ipaddress
import os
import pathlib
import random
import re
from typing import Any

import pytest
import yaml

from exporter.config import (
    DEFAULT_BOGONS,
    Config,
    DnsOptions,
    HttpOptions,
    QuicOptions,
    ResolverSpec,
    TlsOptions,
    TransferOptions,
    load_file,
    load_text,
)
from exporter.errors import ConfigError

CONFIGS = pathlib.Path(__file__).parent / "configs"
INVALID = sorted(p.stem for p in (CONFIGS / "invalid").glob("*.yaml"))


@pytest.fixture
def in_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fixtures are loaded as `invalid/NAME.yaml`, the FILE their expected messages show."""
    monkeypatch.chdir(CONFIGS)


def load_valid(name: str) -> Config:
    return load_file(str(CONFIGS / "valid" / f"{name}.yaml"))


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_text(text, "c.yaml")
    return caught.value.lines()


# -- invalid configurations: one fixture per kind of mistake, with its exact messages -------


@pytest.mark.usefixtures("in_configs")
@pytest.mark.parametrize("name", INVALID)
def test_invalid_config_reports_exactly_the_expected_lines(name: str) -> None:
    expected = (CONFIGS / "invalid" / f"{name}.expected").read_text().splitlines()
    with pytest.raises(ConfigError) as caught:
        load_file(f"invalid/{name}.yaml")
    assert caught.value.lines() == expected
    assert str(caught.value) == "\n".join(expected)


def test_every_invalid_fixture_has_its_expected_messages() -> None:
    expected = {p.stem for p in (CONFIGS / "invalid").glob("*.expected")}
    assert expected == set(INVALID)


@pytest.mark.usefixtures("in_configs")
def test_missing_file_is_reported_without_a_line() -> None:
    with pytest.raises(ConfigError) as caught:
        load_file("invalid/no-such-file.yaml")
    assert caught.value.lines() == [
        "invalid/no-such-file.yaml: cannot read configuration: No such file or directory"
    ]


@pytest.mark.usefixtures("in_configs")
def test_directory_instead_of_file_is_reported() -> None:
    with pytest.raises(ConfigError) as caught:
        load_file("invalid")
    assert caught.value.lines() == ["invalid: cannot read configuration: Is a directory"]


def test_problems_come_in_file_order_whatever_order_they_are_found_in() -> None:
    lines = problems(
        "services:\n"
        "  web:\n"
        "    checks:\n"
        "      - {name: a, kind: http, target: 'https://x.example/', verify: 1, method: get}\n"
        "defaults: {interval: 1x}\n"
    )
    assert lines == [
        "c.yaml:4: services.web.checks[0].verify: must be true or false, got 1",
        "c.yaml:4: services.web.checks[0].method: must be one of GET, HEAD, POST, got 'get'",
        "c.yaml:5: defaults.interval: invalid duration '1x': "
        "expected a number with a unit, e.g. 500ms, 10s, 5m, 1h",
    ]


def test_a_reference_to_a_broken_resolver_is_not_reported_again() -> None:
    lines = problems(
        "resolvers: {nsdi: 'dns://195.208.4.1'}\n"
        "defaults: {resolver: nsdi}\n"
        "services: {web: {checks: [{name: a, kind: dns, target: x.example, resolvers: [nsdi]}]}}\n"
    )
    assert lines == [
        "c.yaml:1: resolvers.nsdi: invalid resolver 'dns://195.208.4.1': "
        "expected udp://, tcp://, tls:// or https:// and a host"
    ]


def test_keys_that_would_blur_the_path_are_quoted_and_every_problem_is_one_line() -> None:
    lines = problems(
        'defaults: {"a\\nb": 1, "x.y": 2}\n'
        'services: {"we b": {checks: [{name: a, kind: tcp, target: "a.example:1"}]}}\n'
    )
    assert lines == [
        "c.yaml:1: defaults['a\\nb']: unknown key (allowed: interval, timeout, resolver, ca_file)",
        "c.yaml:1: defaults['x.y']: unknown key (allowed: interval, timeout, resolver, ca_file)",
        "c.yaml:2: services['we b']: invalid service name 'we b': must match [a-z0-9][a-z0-9_-]*",
    ]


def test_long_values_are_cut_short_in_messages() -> None:
    (line,) = problems(f"services: {{web: {{interval: {'9' * 500}s, checks: []}}}}\n")[:1]
    assert len(line) < 200
    assert "...'" in line


def test_alias_bombs_are_refused_instead_of_expanded() -> None:
    text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 8):
        text += f"{chr(97 + i)}: &{chr(97 + i)} [{', '.join([f'*{chr(96 + i)}'] * 10)}]\n"
    lines = problems(text)
    assert len(lines) == 1
    assert "more than 100000 values" in lines[0]


def test_deeply_nested_yaml_is_an_error_not_a_crash() -> None:
    lines = problems("services:\n  web: " + "[" * 100 + "]" * 100 + "\n")
    assert lines == ["c.yaml:2: invalid YAML: nested more than 64 levels deep"]


# -- valid configurations: parsed values, defaults and inheritance --------------------------


def test_contract_example_parses_to_the_documented_values() -> None:
    config = load_valid("contract")
    assert config.ca_file == str(CONFIGS / "valid" / "ca.pem")  # relative to the file
    assert config.resolvers == {
        "system": ResolverSpec("system", "system"),
        "control": ResolverSpec("control", "https", "1.1.1.1", 443, "https://1.1.1.1/dns-query"),
        "nsdi": ResolverSpec("nsdi", "udp", "195.208.4.1", 53, "udp://195.208.4.1"),
        "tcp": ResolverSpec("tcp", "tcp", "8.8.8.8", 53, "tcp://8.8.8.8:53"),
        "dot": ResolverSpec("dot", "tls", "1.1.1.1", 853, "tls://1.1.1.1:853"),
    }
    assert [p.pattern for p in config.blockpages] == [r"warning\.rt\.ru"]
    assert config.bogons == (
        ipaddress.ip_network("0.0.0.0/8"),
        ipaddress.ip_network("127.0.0.0/8"),
    )
    service = config.services["whatsapp"]
    assert (service.description, service.role, service.scope) == ("WhatsApp", "service", "foreign")
    checks = {check.name: check for check in service.checks}
    assert list(checks) == ["dns", "chat", "tls", "web", "media", "calls", "quic"]
    for check in checks.values():
        assert (check.interval, check.timeout, check.resolver) == (30.0, 10.0, "system")
        assert (check.address, check.ip_version) == ((), 0)
    assert checks["dns"].host == "web.whatsapp.com"
    assert checks["dns"].options == DnsOptions(
        ("system", "nsdi", "control"), "control", "A", (ipaddress.ip_network("157.240.0.0/16"),)
    )
    assert (checks["chat"].host, checks["chat"].port, checks["chat"].options) == (
        "g.whatsapp.net",
        5222,
        None,
    )
    assert checks["tls"].options == TlsOptions("web.whatsapp.com", "example.com", True)
    assert checks["web"].options == HttpOptions("GET", ((200, 399),), True, 1024**2, None, True)
    assert (checks["web"].host, checks["web"].port) == ("web.whatsapp.com", 443)
    assert checks["media"].options == TransferOptions(
        64 * 1024, 25_000.0, 5.0, ((200, 399),), True, None, True
    )
    assert (checks["calls"].kind, checks["calls"].port) == ("stun", 3478)
    assert checks["quic"].options == QuicOptions("www.youtube.com", True)


def test_minimal_config_takes_every_default() -> None:
    config = load_valid("minimal")
    assert config.resolvers == {"system": ResolverSpec("system", "system")}
    assert config.ca_file is None
    assert config.blockpages == ()
    assert config.bogons == tuple(ipaddress.ip_network(c) for c in DEFAULT_BOGONS)
    service = config.services["web"]
    assert (service.description, service.role, service.scope) == ("", "service", "foreign")
    checks = {check.name: check for check in config.checks()}
    for check in checks.values():
        assert (check.interval, check.timeout, check.resolver) == (60.0, 10.0, "system")
    assert checks["names"].options == DnsOptions(("system",), None, "A", ())
    assert checks["page"].options == HttpOptions("GET", ((200, 399),), True, 1024**2, None, True)
    assert checks["media"].options == TransferOptions(
        65536, None, 5.0, ((200, 399),), True, None, True
    )
    assert checks["media"].port == 80
    assert checks["tls"].options == TlsOptions("example.com", None, True)
    assert (checks["tls"].port, checks["calls"].port, checks["quic"].port) == (443, 3478, 443)


def test_settings_flow_from_defaults_to_services_to_checks() -> None:
    config = load_valid("inheritance")
    checks = {check.key: check for check in config.checks()}

    def schedule(service: str, name: str) -> tuple[float, float, str]:
        check = checks[(service, name)]
        return check.interval, check.timeout, check.resolver

    assert schedule("inherits", "chat") == (120.0, 20.0, "nsdi")
    assert schedule("overrides", "service-level") == (30.0, 5.0, "system")
    assert schedule("overrides", "check-level") == (10.0, 0.5, "v6")
    overrides = config.services["overrides"]
    assert (overrides.role, overrides.scope) == ("control", "domestic")


def test_dns_resolvers_default_to_system_plus_the_control() -> None:
    checks = {check.key: check for check in load_valid("inheritance").checks()}
    names = checks[("inherits", "names")].options
    assert names == DnsOptions(("system", "control"), "control", "A", ())
    no_control = checks[("overrides", "no-control")].options
    assert no_control == DnsOptions(("system",), None, "A", ())
    own = checks[("overrides", "own-control")].options
    assert isinstance(own, DnsOptions)
    # The control is not listed: the dns probe queries it all the same.
    assert (own.resolvers, own.control, own.record) == (("nsdi", "v6"), "dot", "AAAA")


def test_resolver_urls_in_every_form() -> None:
    resolvers = load_valid("inheritance").resolvers
    assert resolvers["v6"] == ResolverSpec(
        "v6", "udp", "2001:db8::1", 5353, "udp://[2001:db8::1]:5353"
    )
    # A DoH URL without a path gets the RFC 8484 default one.
    assert resolvers["control"].url == "https://1.1.1.1/dns-query"
    assert resolvers["dot"] == ResolverSpec(
        "dot", "tls", "dns.example", 853, "tls://dns.example:853"
    )


def test_stall_timeout_defaults_to_5s_or_half_the_timeout() -> None:
    checks = {check.key: check for check in load_valid("inheritance").checks()}
    options = checks[("overrides", "stall-default")].options
    assert isinstance(options, TransferOptions)
    assert options.stall_timeout == 2.0


def test_values_in_each_of_their_forms() -> None:
    config = load_valid("values")
    assert config.bogons == ()
    checks = {check.name: check for check in config.checks()}
    http = checks["sizes-bytes"]
    assert (http.host, http.port) == ("2001:db8::1", 8080)
    assert http.options == HttpOptions(
        "HEAD", ((200, 200), (204, 204), (300, 308)), False, 65536, "socks5://127.0.0.1:1080", False
    )
    kib = checks["sizes-kib"].options
    assert isinstance(kib, HttpOptions)
    assert (kib.max_body, kib.expect_status, kib.proxy) == (
        65536,
        ((204, 204),),
        "http://proxy.example:3128",
    )
    rates = {
        name: (options.min_bytes, options.min_rate, options.stall_timeout)
        for name in ("rate-number", "rate-mbit", "rate-kb")
        if isinstance(options := checks[name].options, TransferOptions)
    }
    assert rates == {
        "rate-number": (1024**2, 25_000.0, 1.5),
        "rate-mbit": (65536, 125_000.0, 5.0),
        "rate-kb": (65536, 50_000.0, 5.0),
    }
    assert checks["address-list"].address == ("192.0.2.1", "2001:db8::1")
    assert checks["address-one"].address == ("192.0.2.1",)
    assert [checks[n].ip_version for n in ("ipv4", "ipv6", "any")] == [4, 6, 0]
    assert (checks["ipv6"].host, checks["ipv6"].port) == ("2001:db8::1", 8443)
    assert checks["ipv6"].options == TlsOptions("example.com", None, True)
    # Internationalised names are connected to, and sent as SNI, as their A-label.
    assert checks["idn"].target == "госуслуги.рф"
    assert checks["idn"].host == "xn--c1aapkosapc.xn--p1ai"
    # A name YAML would read as a number stays the text that was written.
    assert checks["010"].host == "192.0.2.1"
    assert checks["quic-sni"].options == QuicOptions("www.youtube.com", False)


def test_transfers_download_by_default_and_uploads_take_any_status_unless_told() -> None:
    checks = {check.name: check for check in load_valid("directions_and_fingerprints").checks()}
    options = {name: checks[name].options for name in checks}
    assert options["download"] == TransferOptions(
        65536, None, 5.0, ((200, 399),), True, None, True, "download"
    )
    assert options["explicit-download"] == options["download"]
    upload = options["upload"]
    assert isinstance(upload, TransferOptions)
    assert (upload.direction, upload.expect_status) == ("upload", None)
    upload_status = options["upload-status"]
    assert isinstance(upload_status, TransferOptions)
    assert upload_status.expect_status == ((200, 200), (204, 204))


def test_tls_fingerprints_are_kept_in_the_order_listed_and_default_to_none() -> None:
    checks = {check.name: check for check in load_valid("directions_and_fingerprints").checks()}
    assert checks["browsers"].options == TlsOptions(
        "example.com", None, True, ("firefox", "chrome")
    )
    assert checks["plain"].options == TlsOptions("example.com", None, True, ())
    assert checks["none"].options == checks["plain"].options


def test_anchors_aliases_and_merge_keys_are_followed() -> None:
    checks = {check.key: check for check in load_valid("anchors").checks()}
    assert set(checks) == {
        ("web", "front"),
        ("web", "back"),
        ("mirror", "front"),
        ("mirror", "back"),
    }
    back = checks[("web", "back")]
    assert (back.target, back.interval, back.timeout) == ("example.org:443", 300.0, 60.0)


def test_loading_twice_gives_equal_hashable_checks() -> None:
    """Reload keeps the state of unchanged checks by comparing them."""
    first, second = load_valid("contract"), load_valid("contract")
    assert list(first.checks()) == list(second.checks())
    assert len(set(first.checks())) == len(list(first.checks()))


def test_byte_order_mark_is_ignored(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "bom.yaml"
    text = (CONFIGS / "valid" / "minimal.yaml").read_text()
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert list(load_file(str(path)).services) == ["web"]


def test_ca_file_is_relative_to_the_base_directory() -> None:
    text = (CONFIGS / "valid" / "contract.yaml").read_text()
    config = load_text(text, "contract.yaml", str(CONFIGS / "valid"))
    assert config.ca_file == str(CONFIGS / "valid" / "ca.pem")
    with pytest.raises(ConfigError) as caught:
        load_text(text, "contract.yaml", os.sep)
    assert caught.value.lines() == [
        "contract.yaml:6: defaults.ca_file: cannot load CA file 'ca.pem': No such file or directory"
    ]


# -- no input produces a traceback ----------------------------------------------------------

WEIRD_VALUES: list[Any] = [
    None, 0, -1, 2**70, 1.5, float("nan"), float("inf"), True, "", " ", "x" * 300, "\x00",
    "\t", "é", "10s", "0s", "1MiB", "200kbit", "udp://[2001:db8::1]:53", "https://[::1",
    "[::1]:0", "::1", "none", "system", "control", "any", 4, 6, [], {}, [None], {"a": None},
    [1, "a", {}], "200-399", "999-100", "(", "http://x:99999/", "socks5://h", "résumé.рф",
    "a..b", "1.2.3.4", "A", "10.0.0.1/8", "fe80::1%eth0", "[example.com]:443", ".",
]  # fmt: skip
KEYS = [
    "defaults", "resolvers", "services", "checks", "name", "kind", "target", "interval",
    "timeout", "resolver", "resolvers", "control", "address", "ip_version", "proxy", "sni",
    "expect_status", "max_body", "min_rate", "stall_timeout", "record", "<<",
]  # fmt: skip


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    for key, value in items:
        out.extend(_paths(value, (*path, key)))
    return out


def _mutate(doc: Any, rnd: random.Random) -> Any:
    for _ in range(rnd.randint(1, 4)):
        paths = _paths(doc)[1:]
        if not paths:
            return doc
        path = rnd.choice(paths)
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        roll = rnd.random()
        if roll < 0.5:
            parent[path[-1]] = copy.deepcopy(rnd.choice(WEIRD_VALUES))
        elif roll < 0.7:
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[rnd.choice(KEYS)] = copy.deepcopy(rnd.choice(WEIRD_VALUES))
        else:
            parent.append(copy.deepcopy(rnd.choice(WEIRD_VALUES)))
    return doc


def _garble(text: str, rnd: random.Random) -> str:
    chars = list(text)
    for _ in range(rnd.randint(1, 4)):
        i = rnd.randrange(len(chars))
        if rnd.random() < 0.5:
            del chars[i]
        else:
            chars.insert(i, rnd.choice(":-[]{}&*!|>'\"#%@\t\n ,?<=~\x00\x85\ufeffa1"))
    return "".join(chars)


def _assert_only_config_errors(text: str) -> None:
    try:
        load_text(text, "f.yaml", str(CONFIGS / "valid"))
    except ConfigError as exc:
        assert exc.lines()
        for line in exc.lines():
            assert re.fullmatch(r"f\.yaml:\d+: .+", line), line
            assert len(line.splitlines()) == 1, line


def test_random_mutations_of_a_valid_config_give_config_errors_only() -> None:
    rnd = random.Random(20240501)
    text = (CONFIGS / "valid" / "contract.yaml").read_text()
    base = yaml.safe_load(text)
    for _ in range(200):
        doc = _mutate(copy.deepcopy(base), rnd)
        _assert_only_config_errors(yaml.safe_dump(doc, allow_unicode=True))
    for _ in range(100):
        _assert_only_config_errors(_garble(text, rnd))
