"""The kinds of check, each declared once: its probe, its target form, its options and their
parser, its phases, the evidence it exports and the verdicts it can give. The configuration
(keys, targets, options), the metrics (phases, evidence), the probe runner and the README's
table of kinds all read this registry; an entry that is missing a part or contradicts itself
stops the exporter at import, not at the first scrape.

A new kind is a probe module under exporter/probes/ plus one `Kind(...)` entry below (and
its row in the README's table of kinds, which a test holds to this registry)."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import typing
from collections.abc import Awaitable, Callable, Mapping

from exporter.config.kindrules import (
    COMMON_KEYS,
    CONNECT_KEYS,
    OptionsParser,
    dns_options,
    http_options,
    quic_options,
    tls_options,
    transfer_options,
)
from exporter.config.model import (
    Check,
    DnsOptions,
    HttpOptions,
    QuicOptions,
    TlsOptions,
    TransferOptions,
)
from exporter.config.values import NAME_RE, TargetForm
from exporter.probeenv import ProbeEnv
from exporter.probes import dns, http, stun, tcp, tls, transfer
from exporter.result import (
    PHASE_CONNECT,
    PHASE_FIRST_BYTE,
    PHASE_RESOLVE,
    PHASE_TLS,
    PHASE_TRANSFER,
    Result,
)
from exporter.verdicts import (
    ANSWER_FAILURES,
    EXPORTER_FAILURES,
    FINGERPRINT_FAILURES,
    HTTP_FAILURES,
    QUIC_HANDSHAKE_FAILURES,
    RESOLVE_FAILURES,
    SNI_FAILURES,
    TCP_FAILURES,
    TLS_FAILURES,
    TRANSFER_FAILURES,
    UDP_FAILURES,
    Verdict,
)

# async def probe(check, env, deadline) -> Result, where `deadline` is the event-loop time by
# which the probe must have returned. A probe never raises for a target failure.
ProbeFn = Callable[[Check, ProbeEnv, float], Awaitable[Result]]

# Every phase in the order a run goes through them; a kind has a subsequence of these.
PHASES = (PHASE_RESOLVE, PHASE_CONNECT, PHASE_TLS, PHASE_FIRST_BYTE, PHASE_TRANSFER)


class Evidence(enum.StrEnum):
    """What a kind's runs export beyond the series every check has."""

    DNS_ANSWERS = "dns_answers"  # each resolver's addresses and verdict
    CERT_EXPIRY = "cert_expiry"  # the leaf certificate's notAfter
    STATUS_CODE = "status_code"  # the final HTTP status
    TRANSFER = "transfer"  # bytes moved and the rate
    FINGERPRINTS = "fingerprints"  # whether each browser-shaped ClientHello got an answer


class KindError(Exception):
    """A registry entry that cannot work; raised at import."""


@dataclasses.dataclass(frozen=True)
class Kind:
    """One kind of check. Every field must be given: leaving one out is a TypeError, giving
    one that cannot work a KindError, both at import."""

    name: str
    probe: ProbeFn
    target: TargetForm
    default_port: int | None  # host:port targets only; None: the target must give one
    options: type | None  # the frozen dataclass in Check.options; None: the kind has none
    parse_options: OptionsParser | None  # returns `options` from the check's keys
    phases: tuple[str, ...]
    evidence: frozenset[Evidence]
    verdicts: frozenset[Verdict]  # the failures it can report; `error` is always possible
    # For keys of other kinds: what to write instead ("list the resolvers in `resolvers`").
    key_hints: Mapping[str, str]

    def __post_init__(self) -> None:
        problems = list(_problems(self))
        if problems:
            raise KindError(f"kind {self.name!r}: {'; '.join(problems)}")

    @property
    def connects(self) -> bool:
        """Whether it resolves its target and connects to it (every kind but dns)."""
        return self.target is not TargetForm.NAME

    @property
    def option_keys(self) -> tuple[str, ...]:
        if self.options is None:
            return ()
        return tuple(field.name for field in dataclasses.fields(self.options))

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key a check of this kind takes."""
        connect = CONNECT_KEYS if self.connects else ()
        return (*COMMON_KEYS, *connect, *self.option_keys)

    @property
    def failure_verdicts(self) -> frozenset[Verdict]:
        return self.verdicts | EXPORTER_FAILURES


def _problems(kind: Kind) -> typing.Iterator[str]:
    if not isinstance(kind.name, str) or not NAME_RE.fullmatch(kind.name):
        yield "the name must match [a-z0-9][a-z0-9_-]*"
    if not inspect.iscoroutinefunction(kind.probe):
        yield "probe must be an async function (check, env, deadline) -> Result"
    if not isinstance(kind.target, TargetForm):
        yield "target must be a TargetForm"
    if kind.default_port is not None and (
        kind.target is not TargetForm.HOST_PORT or not 1 <= kind.default_port <= 65535
    ):
        yield "only host:port targets have a default port, and it must be 1-65535"
    yield from _option_problems(kind)
    if not kind.phases or list(kind.phases) != [p for p in PHASES if p in kind.phases]:
        yield f"phases must be some of {', '.join(PHASES)}, in that order"
    elif kind.phases[0] != PHASE_RESOLVE:
        yield "every kind resolves first: phases start with resolve"
    if not isinstance(kind.evidence, frozenset) or not all(
        isinstance(e, Evidence) for e in kind.evidence
    ):
        yield "evidence must be a frozenset of Evidence"
    if (
        not isinstance(kind.verdicts, frozenset)
        or not kind.verdicts
        or not all(isinstance(v, Verdict) for v in kind.verdicts)
        or Verdict.OK in kind.verdicts
        or kind.verdicts & EXPORTER_FAILURES
    ):
        yield "verdicts must be a non-empty frozenset of failure verdicts (ok and error aside)"
    if not isinstance(kind.key_hints, Mapping):
        yield "key_hints must be a mapping of key to hint"


def _option_problems(kind: Kind) -> typing.Iterator[str]:
    if (kind.options is None) != (kind.parse_options is None):
        yield "options and parse_options go together: both or neither"
        return
    if kind.options is None or kind.parse_options is None:
        return
    params = getattr(kind.options, "__dataclass_params__", None)
    if not dataclasses.is_dataclass(kind.options) or params is None or not params.frozen:
        yield "options must be a frozen dataclass"
        return
    returns = typing.get_type_hints(kind.parse_options).get("return")
    if returns is not kind.options:
        yield f"parse_options must return {kind.options.__name__}"
    shared = set(kind.option_keys) & {*COMMON_KEYS, *CONNECT_KEYS}
    if shared:
        yield f"options must not redefine the keys every check has: {', '.join(sorted(shared))}"


def _register(*kinds: Kind) -> dict[str, Kind]:
    registry: dict[str, Kind] = {}
    for kind in kinds:
        if kind.name in registry:
            raise KindError(f"kind {kind.name!r} is declared twice")
        registry[kind.name] = kind
    every_key = {key for kind in kinds for key in kind.keys}
    for kind in kinds:
        for key in kind.key_hints:
            if key in kind.keys or key not in every_key:
                raise KindError(
                    f"kind {kind.name!r}: a hint for {key!r}, which is not a key of another kind"
                )
    return registry


async def _quic_probe(check: Check, env: ProbeEnv, deadline: float) -> Result:
    # aioquic and the cryptography it pulls in cost ~15 MB: only a configuration with a quic
    # check pays for them.
    from exporter.probes import quic

    return await quic.probe(check, env, deadline)


REGISTRY: Mapping[str, Kind] = _register(
    Kind(
        name="dns",
        probe=dns.probe,
        target=TargetForm.NAME,
        default_port=None,
        options=DnsOptions,
        parse_options=dns_options,
        phases=(PHASE_RESOLVE,),
        evidence=frozenset({Evidence.DNS_ANSWERS}),
        verdicts=RESOLVE_FAILURES | ANSWER_FAILURES,
        key_hints={"resolver": "list the resolvers to query in `resolvers`"},
    ),
    Kind(
        name="tcp",
        probe=tcp.probe,
        target=TargetForm.HOST_PORT,
        default_port=None,
        options=None,
        parse_options=None,
        phases=(PHASE_RESOLVE, PHASE_CONNECT),
        evidence=frozenset(),
        verdicts=RESOLVE_FAILURES | TCP_FAILURES,
        key_hints={},
    ),
    Kind(
        name="tls",
        probe=tls.probe,
        target=TargetForm.HOST_PORT,
        default_port=443,
        options=TlsOptions,
        parse_options=tls_options,
        phases=(PHASE_RESOLVE, PHASE_CONNECT, PHASE_TLS),
        evidence=frozenset({Evidence.CERT_EXPIRY, Evidence.FINGERPRINTS}),
        verdicts=(
            RESOLVE_FAILURES | TCP_FAILURES | TLS_FAILURES | SNI_FAILURES | FINGERPRINT_FAILURES
        ),
        key_hints={},
    ),
    Kind(
        name="http",
        probe=http.probe,
        target=TargetForm.URL,
        default_port=None,
        options=HttpOptions,
        parse_options=http_options,
        phases=PHASES,
        evidence=frozenset({Evidence.CERT_EXPIRY, Evidence.STATUS_CODE}),
        verdicts=RESOLVE_FAILURES | TCP_FAILURES | TLS_FAILURES | HTTP_FAILURES,
        key_hints={},
    ),
    Kind(
        name="transfer",
        probe=transfer.probe,
        target=TargetForm.URL,
        default_port=None,
        options=TransferOptions,
        parse_options=transfer_options,
        phases=PHASES,
        evidence=frozenset({Evidence.CERT_EXPIRY, Evidence.STATUS_CODE, Evidence.TRANSFER}),
        verdicts=RESOLVE_FAILURES | TCP_FAILURES | TLS_FAILURES | HTTP_FAILURES | TRANSFER_FAILURES,
        key_hints={},
    ),
    Kind(
        name="stun",
        probe=stun.probe,
        target=TargetForm.HOST_PORT,
        default_port=3478,
        options=None,
        parse_options=None,
        phases=(PHASE_RESOLVE, PHASE_FIRST_BYTE),
        evidence=frozenset(),
        verdicts=RESOLVE_FAILURES | UDP_FAILURES,
        key_hints={},
    ),
    Kind(
        name="quic",
        probe=_quic_probe,
        target=TargetForm.HOST_PORT,
        default_port=443,
        options=QuicOptions,
        parse_options=quic_options,
        phases=(PHASE_RESOLVE, PHASE_TLS),
        evidence=frozenset(),
        verdicts=RESOLVE_FAILURES | UDP_FAILURES | QUIC_HANDSHAKE_FAILURES,
        key_hints={},
    ),
)


def kind_of(check: Check) -> Kind:
    return REGISTRY[check.kind]
