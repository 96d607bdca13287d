"""HTTP exchanges for the probes, over httpx with our own connection layers underneath.

httpx reports a refused connection and a failed TLS handshake alike (ConnectError), connects
to whatever its resolver returns, and pools connections. A probe needs the opposite: resolve
through the check's resolver, connect to the address it chose while keeping the name for SNI
and Host, a fresh connection every run, and the layer of every failure. So an exchange hands
its httpx.Request to `ProbeTransport` (one per proxy setting), which connects with
`exporter.netconnect`, goes through a proxy with `exporter.proxytunnel` when the check has
one, and speaks HTTP/1.1 with `exporter.httpwire`: one stack for direct and proxied requests.
No httpx.AsyncClient sits in between: redirects, cookies, proxies and timeouts are all
handled here, so its per-request machinery was pure cost (~5% of an https probe's CPU).

Reuse (the http and transfer probes do this through `exporter.httpchain`)::

    try:
        async with http_request(check, env, deadline, url, phases=phases) as exchange:
            exchange.response          # httpx.Response: status and headers, body unread
            body = await exchange.read(limit)         # at most `limit` bytes, or
            async for chunk in exchange.chunks(): ... # raw body chunks as they arrive
    except ExchangeFailure as failure:
        failure.verdict, failure.detail, failure.exchange   # layer verdict and evidence

`check.options` must be HttpOptions or TransferOptions (for `verify` and `proxy`). Every await
of the exchange is bounded by `deadline` and raises ExchangeFailure, never a raw network
error; its `failure` is the typed failure of `exporter.errors` and its `verdict` what
classify makes of it. A timeout names the stage in progress (`exchange.stage`). The exchange
records the phases resolve, connect, tls (netconnect) and first_byte, transfer (here) into
`phases`, adding to what is there (so redirects sum up), and exposes `address`, `addresses`
(through a proxy: the proxy's), `cert_expiry`, `request_sent_at`, `first_byte_at` and
`bytes_read`. Wrap extra work in your own `asyncio.timeout_at(deadline)` and turn its
TimeoutError into a verdict with `exchange.failure(exc)`.

Each request sends `Connection: close` and its connection is dropped at the end of the block:
nothing is reused across requests or runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import socket
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx

from exporter import __version__, classify
from exporter.config import Check, HttpOptions, TransferOptions
from exporter.errors import (
    HttpFailure,
    HttpTimeout,
    ProbeFailure,
    ProxyNameFailure,
    ResolveTimeout,
    TcpFailure,
    TcpTimeout,
    TlsFailure,
    TlsTimeout,
)
from exporter.httpwire import Http11
from exporter.netconnect import TcpConnection, open_tcp, resolve, tls_handshake
from exporter.probeenv import ProbeEnv
from exporter.proxytunnel import Proxy, http_connect, socks5_connect
from exporter.result import PHASE_FIRST_BYTE, PHASE_RESOLVE, PHASE_TRANSFER, Phases
from exporter.stream import Stream, open_stream
from exporter.verdicts import Verdict

USER_AGENT = f"reachability-exporter/{__version__}"
# Identity: a blockpage pattern must see the body as sent, and a compressed body could
# expand past max_body in memory.
DEFAULT_HEADERS = (
    ("User-Agent", USER_AGENT),
    ("Accept", "*/*"),
    ("Accept-Encoding", "identity"),
    ("Connection", "close"),
)
HTTP_ALPN = ("http/1.1",)

STAGE_RESOLVE = "resolve"
STAGE_CONNECT = "connect"
STAGE_TLS = "tls"
STAGE_FIRST_BYTE = "first_byte"
STAGE_TRANSFER = "transfer"
STAGE_DONE = "done"

# The failure a timeout is in each stage; after the handshake it is the response that is late.
_TIMEOUTS: dict[str, type[ProbeFailure]] = {
    STAGE_RESOLVE: ResolveTimeout,
    STAGE_CONNECT: TcpTimeout,
    STAGE_TLS: TlsTimeout,
}
_TIMEOUT_TEXT = {
    STAGE_RESOLVE: "resolving the name",
    STAGE_CONNECT: "connecting",
    STAGE_TLS: "in the TLS handshake",
    STAGE_FIRST_BYTE: "waiting for the response",
    STAGE_TRANSFER: "reading the response body",
}

# Failures of the network or the peer, which become verdicts. Anything else is a bug in the
# exporter and propagates (run_check reports it as `error`).
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    ProbeFailure,
    TimeoutError,
    OSError,
    EOFError,
    httpx.HTTPError,
    httpx.InvalidURL,
)


class ExchangeFailure(Exception):
    """An HTTP exchange failed: the typed failure, its verdict and evidence, and the exchange
    (its phases, addresses and stage at the time)."""

    def __init__(self, failure: ProbeFailure, exchange: HttpExchange) -> None:
        super().__init__(failure.detail)
        self.failure = failure
        self.verdict: Verdict = classify.verdict(failure)
        self.detail = failure.detail
        self.exchange = exchange


class HttpExchange:
    """One request and its response over one fresh connection; see the module docstring."""

    def __init__(
        self,
        check: Check,
        env: ProbeEnv,
        deadline: float,
        phases: Phases | None = None,
    ) -> None:
        options = check.options
        assert isinstance(options, HttpOptions | TransferOptions)
        self.check = check
        self.env = env
        self.deadline = deadline
        self.phases = Phases() if phases is None else phases
        self.verify = options.verify
        self.proxy = options.proxy
        self.stage = STAGE_RESOLVE
        self.url: str = ""
        self.response: httpx.Response | None = None
        self.addresses: list[str] = []
        self.address: str | None = None
        self.cert_expiry: float | None = None
        self.request_sent_at: float | None = None
        self.first_byte_at: float | None = None
        self.body_done_at: float | None = None
        self.bytes_read = 0
        self._stream: Stream | None = None
        self._loop = asyncio.get_running_loop()

    # -- sending -----------------------------------------------------------------------------

    async def send(
        self, url: str, method: str = "GET", cookies: httpx.Cookies | None = None
    ) -> httpx.Response:
        """Send the request (with `cookies`, when there are any) and return once the
        response headers are in."""
        self.url = url
        transport = shared_transport(self.env, self.proxy)
        try:
            async with asyncio.timeout_at(self.deadline):
                if cookies:
                    request = httpx.Request(method, _url(url), headers=DEFAULT_HEADERS)
                    cookies.set_cookie_header(request)
                else:
                    request = _plain_request(method, url)
                response = await transport.send(self, request)
        except NETWORK_ERRORS as exc:
            self._close_stream()
            raise self.failure(exc) from exc
        self.response = response
        self.stage = STAGE_TRANSFER
        if self._stream is not None and self.first_byte_at is None:
            self.first_byte_at = self._stream.first_data
        return response

    # -- receiving ---------------------------------------------------------------------------

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """The body as it arrives (raw, not decoded), each wait bounded by the deadline.
        Stop iterating whenever you have enough; the connection is dropped at the end."""
        assert self.response is not None, "send() first"
        iterator = self.response.aiter_raw()
        try:
            while True:
                try:
                    async with asyncio.timeout_at(self.deadline):
                        chunk = await anext(iterator)
                except StopAsyncIteration:
                    break
                except NETWORK_ERRORS as exc:
                    raise self.failure(exc) from exc
                self.bytes_read += len(chunk)
                yield chunk
        finally:
            self._body_ended()
            await _close_iterator(iterator)

    async def read(self, limit: int) -> bytes:
        """The body, or its first `limit` bytes: nothing past `limit` is kept, and reading
        stops there. (One deadline for the whole body: cheaper than chunks() per chunk.)"""
        assert self.response is not None, "send() first"
        if limit <= 0:
            return b""
        body = bytearray()
        # Our own body straight from h11: httpx's aiter_raw adds two generator levels, a
        # chunker and a context per chunk, and reads nothing we do not already have.
        stream = self.response.stream
        iterator = stream.parts() if isinstance(stream, _H11Body) else self.response.aiter_raw()
        try:
            async with asyncio.timeout_at(self.deadline):
                async for chunk in iterator:
                    self.bytes_read += len(chunk)
                    room = limit - len(body)
                    body += chunk[:room]
                    if len(chunk) >= room:
                        break
        except NETWORK_ERRORS as exc:
            raise self.failure(exc) from exc
        finally:
            self._body_ended()
            await _close_iterator(iterator)
        return bytes(body)

    def _body_ended(self) -> None:
        self.body_done_at = self._loop.time()
        if self.stage == STAGE_TRANSFER:
            self.stage = STAGE_DONE

    # -- verdicts and evidence ---------------------------------------------------------------

    def failure(self, exc: BaseException) -> ExchangeFailure:
        """An exception raised during this exchange as a typed failure, by the stage it hit."""
        if isinstance(exc, ExchangeFailure):
            return exc
        failure: ProbeFailure
        stage = self.stage
        if isinstance(exc, ProbeFailure):
            failure = exc
        elif isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
            # A URL we cannot request (a broken Location): no layer below HTTP is to blame.
            failure = HttpFailure(classify.describe(exc))
        elif isinstance(exc, TimeoutError):
            text = f"timed out {_TIMEOUT_TEXT.get(stage, 'in the exchange')}"
            if stage == STAGE_TRANSFER:
                text += f" after {self.bytes_read} bytes"
            failure = _TIMEOUTS.get(stage, HttpTimeout)(text)
        elif stage in (STAGE_RESOLVE, STAGE_CONNECT):
            failure = TcpFailure(classify.describe(exc))
        elif stage == STAGE_TLS:
            failure = TlsFailure(classify.describe(exc))
        else:
            failure = HttpFailure(classify.describe(exc))
        if failure is not exc:
            failure.__cause__ = exc
        return ExchangeFailure(failure, self)

    def close(self) -> None:
        """Drop the connection and book the first_byte and transfer phases."""
        self._close_stream()
        if self.request_sent_at is None:
            return
        end = self.body_done_at if self.body_done_at is not None else self._loop.time()
        first = self.first_byte_at
        if first is None and self._stream is not None:
            first = self._stream.first_data
        if first is None or self.response is None:
            self.phases.add(PHASE_FIRST_BYTE, end - self.request_sent_at)
        else:
            self.phases.add(PHASE_FIRST_BYTE, first - self.request_sent_at)
            self.phases.add(PHASE_TRANSFER, max(end - first, 0.0))
        self.request_sent_at = None

    def _close_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()

    # -- called by the transport -------------------------------------------------------------

    async def connect(self, host: str, port: int, tls: bool) -> Stream:
        """Resolve `host` (through the check's resolver; `address:` for its own host), open
        TCP to its addresses in turn, and with `tls` run the handshake on that socket."""
        self.stage = STAGE_RESOLVE
        self.addresses = await resolve(self.check, self.env, self.deadline, self.phases, host)
        connection = await self._open(self.addresses, port)
        if not tls:
            return await self._adopt(connection)
        self.stage = STAGE_TLS
        context = self.env.ssl_context(self.verify, HTTP_ALPN)
        stream = await tls_handshake(connection.sock, context, host, self.deadline, self.phases)
        self._stream = stream
        self.cert_expiry = stream.cert_expiry()
        return stream

    async def connect_proxy(self, proxy: Proxy) -> Stream:
        """TCP to the proxy. Its name is the operator's, not a probed one: it resolves
        through the system, and neither bogons nor `address:` apply."""
        self.stage = STAGE_RESOLVE
        started = self._loop.time()
        try:
            addresses = [str(ipaddress.ip_address(proxy.host))]
        except ValueError:
            try:
                infos = await self._loop.getaddrinfo(
                    proxy.host, proxy.port, type=socket.SOCK_STREAM
                )
            except OSError as exc:
                raise ProxyNameFailure(f"proxy {proxy.host}: {exc}") from exc
            addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        finally:
            self.phases.add(PHASE_RESOLVE, self._loop.time() - started)
        return await self._adopt(await self._open(addresses, proxy.port))

    async def _open(self, addresses: list[str], port: int) -> TcpConnection:
        self.stage = STAGE_CONNECT
        try:
            connection = await open_tcp(addresses, port, self.deadline, self.phases)
        except TcpFailure as failure:
            self.addresses = failure.tried
            raise
        self.addresses = connection.tried
        self.address = connection.address
        return connection

    async def _adopt(self, connection: TcpConnection) -> Stream:
        self._stream = await open_stream(connection.sock)
        return self._stream

    async def start_tls(self, stream: Stream, host: str) -> None:
        """TLS inside the proxy's tunnel, verified as the check says."""
        self.stage = STAGE_TLS
        context = self.env.ssl_context(self.verify, HTTP_ALPN)
        await stream.start_tls(context, host, self.deadline, self.phases)
        self.cert_expiry = stream.cert_expiry()

    def socket(self) -> Any:
        """The socket under this exchange's connection (for TCP_INFO), if it is open."""
        return None if self._stream is None else self._stream.get_extra_info("socket")

    def request_started(self) -> None:
        """The connection is ready and the request goes out now."""
        self.stage = STAGE_FIRST_BYTE
        self.request_sent_at = self._loop.time()
        if self._stream is not None:
            self._stream.mark()


# Bounded: a configuration has a few thousand targets at most; one that is gone falls out.
_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _url(text: str) -> httpx.URL:
    """Parsed URLs, kept: the same targets come back every run, and parsing one costs as
    much as the rest of building the request."""
    return httpx.URL(text)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _plain_request(method: str, url: str) -> httpx.Request:
    """The request for `url` without cookies, kept: it is the same every run (nothing here
    changes a request once made), and building one (headers normalised, Host added, an empty
    body stream read) cost ~2% of an https probe."""
    return httpx.Request(method, _url(url), headers=DEFAULT_HEADERS)


async def _close_iterator(iterator: AsyncIterator[bytes]) -> None:
    """aiter_raw is a generator: closing it ends the read loop under it now, not at garbage
    collection."""
    closer = getattr(iterator, "aclose", None)
    if closer is not None:
        await closer()


@contextlib.asynccontextmanager
async def http_request(
    check: Check,
    env: ProbeEnv,
    deadline: float,
    url: str,
    *,
    method: str = "GET",
    phases: Phases | None = None,
    cookies: httpx.Cookies | None = None,
) -> AsyncIterator[HttpExchange]:
    """Send one request on a fresh connection; inside the block the response headers are in
    and the body is unread. Raises ExchangeFailure (see the module docstring)."""
    exchange = HttpExchange(check, env, deadline, phases)
    try:
        await exchange.send(url, method, cookies)
        yield exchange
    finally:
        if exchange.response is not None:
            await exchange.response.aclose()
        exchange.close()


# -- the transport ---------------------------------------------------------------------------


def shared_transport(env: ProbeEnv, proxy: str | None) -> ProbeTransport:
    """The one transport for this proxy setting (verification is the exchange's)."""
    return env.shared(("probe-http", proxy), lambda: ProbeTransport(proxy))


class ProbeTransport:
    """Sends each request over a connection of its own, opened by its exchange: straight to
    the target, or through the check's proxy. Each run's cookies stay in its own chain
    (exporter.httpchain): nothing here keeps any."""

    def __init__(self, proxy: str | None) -> None:
        self._proxy = None if proxy is None else Proxy.parse(proxy)

    async def send(self, exchange: HttpExchange, request: httpx.Request) -> httpx.Response:
        url = request.url
        https = url.scheme == "https"
        if not https and url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        host, port = url.host, url.port or (443 if https else 80)
        target = url.raw_path
        proxy = self._proxy
        if proxy is None:
            stream = await exchange.connect(host, port, tls=https)
        else:
            stream = await exchange.connect_proxy(proxy)
            if proxy.tunnels_plain_http:
                await socks5_connect(stream, host, port)
            elif https:
                await http_connect(stream, host, port)
            else:
                target = str(url).encode("ascii")  # the absolute form, for the proxy to forward
            if https:
                await exchange.start_tls(stream, host)
        http11 = Http11(stream)
        body = await request.aread()
        exchange.request_started()
        http11.send_request(request.method, target, request.headers.raw, body)
        head = await http11.response_head()
        return httpx.Response(
            status_code=head.status_code,
            headers=head.headers.raw_items(),
            stream=_H11Body(http11, stream),
            request=request,  # httpx.Cookies.extract_cookies reads the URL from it
            extensions={
                "http_version": b"HTTP/" + head.http_version,
                "reason_phrase": head.reason,
            },
        )


class _H11Body(httpx.AsyncByteStream):
    """A response body read through h11; closing it drops the connection."""

    def __init__(self, http11: Http11, stream: Stream) -> None:
        self._http11 = http11
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._http11.body():
            yield part

    def parts(self) -> AsyncIterator[bytes]:
        """The body's parts, without the wrapping of httpx's iterators."""
        return self._http11.body()

    async def aclose(self) -> None:
        self._stream.close()


__all__ = [
    "ExchangeFailure",
    "HttpExchange",
    "ProbeTransport",
    "http_request",
    "shared_transport",
]
