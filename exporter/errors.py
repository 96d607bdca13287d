"""The exporter's exceptions: those about itself (a configuration it cannot use) and those
the probe layers raise about a target, typed by layer and symptom so that one module,
`exporter.classify`, turns them into verdicts without reading any message text.

Exception tree::

    Exception
    ├── ConfigError              a configuration that cannot be used (exit 2, not a verdict)
    └── ProbeFailure             a target failure seen in one layer; `detail` is the evidence
        ├── ResolveFailure       no usable address; `verdict` as the DNS judge decided it
        ├── ResolveTimeout       the probe's time ran out while resolving
        ├── ProxyNameFailure     the proxy's own name did not resolve (getaddrinfo's errno)
        ├── TcpFailure           the TCP handshake failed; why is in the cause chain
        │   ├── TcpTimeout       no answer to the SYN in time
        │   └── TcpRefused       refused, also a proxy saying the target refused it
        ├── TlsFailure           the TLS handshake failed; why is in the cause chain
        │   ├── TlsTimeout       the handshake got no (further) answer in time
        │   ├── TlsClosed        the peer closed or reset the connection in the handshake
        │   ├── CertificateInvalid   the handshake completed, the certificate did not verify
        │   ├── SniBlocked       only the real name fails; a control name completes
        │   └── FingerprintBlocked   a listed browser ClientHello fails where another passes
        ├── HttpFailure          after the handshake, before the response ended; why is in
        │   │                    the cause chain (default: a protocol violation)
        │   ├── HttpTimeout      the response (or its body) was late
        │   ├── PeerClosed       reset, or closed before the response was complete
        │   ├── TooManyEvents    a response in so many tiny parts that parsing it would pin
        │   │                    the event loop (the bound is in exporter.httpwire)
        │   ├── RedirectRefused  a redirect that is not followed: too many, a bad target
        │   ├── Blockpage        a blockpage pattern matched, or a redirect into bogons
        │   └── UnexpectedStatus a final status outside expect_status
        ├── TransferFailure      a sustained download that fell short
        │   ├── Stalled          no byte for stall_timeout after progress
        │   └── Throttled        slower than min_rate
        └── UdpFailure           a UDP exchange met an ICMP error, an invalid answer or a flood
            └── UdpTimeout       no answer at all
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from exporter.verdicts import Verdict


@dataclasses.dataclass(frozen=True)
class Problem:
    """One configuration problem; line 0 means the file as a whole."""

    line: int
    path: str
    message: str
    column: int = 0  # orders problems on one line; not shown

    def format(self, file: str) -> str:
        """One line, whatever the configuration contained."""
        where = f"{file}:{self.line}" if self.line else file
        text = f"{self.path}: {self.message}" if self.path else self.message
        return f"{where}: {_printable(text)}"


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


class ConfigError(Exception):
    """A configuration that cannot be used; carries every problem found, in file order."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = sorted(problems, key=lambda p: (p.line, p.column))
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [problem.format(self.file) for problem in self.problems]


_F = TypeVar("_F", bound="ProbeFailure")


class ProbeFailure(Exception):
    """A target failure in one layer. The type names the layer and, where the layer knows it,
    the symptom; the cause chain keeps the low-level error for classify to read."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def restated(self: _F, detail: str) -> _F:
        """This failure (same type, same cause) with other evidence, e.g. every attempt's."""
        other = type(self).__new__(type(self), detail)
        other.__dict__.update(self.__dict__)
        other.args = (detail,)
        other.detail = detail
        other.__cause__ = self.__cause__
        return other


class ResolveFailure(ProbeFailure):
    def __init__(self, verdict: Verdict, detail: str) -> None:
        super().__init__(detail)
        self.verdict = verdict  # decided by exporter.dnsjudge, the pure DNS judge


class ResolveTimeout(ProbeFailure):
    pass


class ProxyNameFailure(ProbeFailure):
    pass


class TcpFailure(ProbeFailure):
    def __init__(self, detail: str, tried: list[str] | None = None) -> None:
        super().__init__(detail)
        self.tried = [] if tried is None else tried  # addresses attempted, in order


class TcpTimeout(TcpFailure):
    pass


class TcpRefused(TcpFailure):
    pass


class TlsFailure(ProbeFailure):
    pass


class TlsTimeout(TlsFailure):
    pass


class TlsClosed(TlsFailure):
    pass


class CertificateInvalid(TlsFailure):
    pass


class SniBlocked(TlsFailure):
    pass


class FingerprintBlocked(TlsFailure):
    pass


class HttpFailure(ProbeFailure):
    pass


class HttpTimeout(HttpFailure):
    pass


class PeerClosed(HttpFailure):
    pass


class TooManyEvents(HttpFailure):
    pass


class RedirectRefused(HttpFailure):
    pass


class Blockpage(HttpFailure):
    pass


class UnexpectedStatus(HttpFailure):
    pass


class TransferFailure(ProbeFailure):
    pass


class Stalled(TransferFailure):
    pass


class Throttled(TransferFailure):
    pass


class UdpFailure(ProbeFailure):
    pass


class UdpTimeout(UdpFailure):
    pass
