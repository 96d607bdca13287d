"""HTTP exchanges for the probes, over httpx with our own connection layers underneath.

httpx reports a refused connection and a failed TLS handshake alike (ConnectError), connects
to whatever its resolver returns, and pools connections. A probe needs the opposite: resolve
through the check's resolver, connect to the address it chose while keeping the name for SNI
and Host, a fresh connection every run, and the layer of every failure. So each shared
`httpx.AsyncClient` (one per distinct verify/proxy setting, `trust_env=False`) sends through
`ProbeTransport`, which connects with `exporter.netconnect` and speaks HTTP/1.1 over that
connection with h11; proxies go through httpcore's SOCKS5 and CONNECT support, with
`ProbeBackend` opening the connection to the proxy. The exchange in progress travels to the
transport in a context variable, so one shared client serves concurrent probes.

Reuse (the http probe does this; a transfer probe can do the same)::

    try:
        async with http_request(check, env, deadline, url, phases=phases) as exchange:
            exchange.response          # httpx.Response: status and headers, body unread
            body = await exchange.read(limit)         # at most `limit` bytes, or
            async for chunk in exchange.chunks(): ... # raw body chunks as they arrive
    except ExchangeFailure as failure:
        failure.verdict, failure.detail, failure.exchange   # layer verdict and evidence

`check.options` must be HttpOptions or TransferOptions (for `verify` and `proxy`). Every await
of the exchange is bounded by `deadline` and raises ExchangeFailure, never a raw network
error: dns_*/tcp_*/tls_* for the connection layers, http_timeout, http_reset or http_error
after them. A timeout names the stage in progress (`exchange.stage`). The exchange records
the phases resolve, connect, tls (netconnect) and first_byte, transfer (here) into `phases`,
adding to what is there (so redirects sum up), and exposes `address`, `addresses` (through a
proxy: the proxy's), `cert_expiry`, `request_sent_at`, `first_byte_at`, `bytes_read` and
`via_proxy`. Wrap extra work in your own `asyncio.timeout_at(deadline)` and turn its
TimeoutError into a verdict with `exchange.failure(exc)`.

Each request sends `Connection: close` and its connection is dropped at the end of the block:
nothing is reused across requests or runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import http.cookiejar
import ipaddress
import socket
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator
from typing import Any

import h11
import httpcore
import httpx

from exporter import __version__, classify
from exporter.config import Check, HttpOptions, TransferOptions
from exporter.netconnect import (
    ConnectFailure,
    LayerFailure,
    Stream,
    TcpConnection,
    open_stream,
    open_tcp,
    resolve,
    tls_handshake,
)
from exporter.probeenv import ProbeEnv
from exporter.result import PHASE_FIRST_BYTE, PHASE_RESOLVE, PHASE_TRANSFER, Phases
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

# Bytes asked of the stream per read, and the largest response head accepted (httpcore's).
READ_SIZE = 64 * 1024
MAX_RESPONSE_HEAD = 100 * 1024

STAGE_RESOLVE = "resolve"
STAGE_CONNECT = "connect"
STAGE_TLS = "tls"
STAGE_FIRST_BYTE = "first_byte"
STAGE_TRANSFER = "transfer"
STAGE_DONE = "done"

# What a timeout in each stage means; after the handshake it is the response that is late.
_TIMEOUT_VERDICTS = {
    STAGE_RESOLVE: Verdict.DNS_TIMEOUT,
    STAGE_CONNECT: Verdict.TCP_TIMEOUT,
    STAGE_TLS: Verdict.TLS_TIMEOUT,
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
    LayerFailure,
    TimeoutError,
    OSError,
    EOFError,
    httpx.HTTPError,
    httpx.InvalidURL,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.ProxyError,
    httpcore.TimeoutException,
)

_current: contextvars.ContextVar[HttpExchange | None] = contextvars.ContextVar(
    "reachability_http_exchange", default=None
)

# How getaddrinfo says what went wrong resolving a proxy's name.
_GAI_VERDICTS = {socket.EAI_NONAME: Verdict.DNS_NXDOMAIN, socket.EAI_AGAIN: Verdict.DNS_TIMEOUT}


class ExchangeFailure(LayerFailure):
    """An HTTP exchange failed: the layer verdict, the evidence, and the exchange (its
    phases, addresses and stage at the time)."""

    def __init__(self, verdict: Verdict, detail: str, exchange: HttpExchange) -> None:
        super().__init__(verdict, detail)
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
        self.via_proxy = False
        self._stream: Stream | None = None
        self._loop = asyncio.get_running_loop()

    # -- sending -----------------------------------------------------------------------------

    async def send(
        self,
        url: str,
        method: str = "GET",
        headers: Iterable[tuple[str, str]] = (),
        cookies: httpx.Cookies | None = None,
    ) -> httpx.Response:
        """Send the request and return once the response headers are in."""
        self.url = url
        client = shared_client(self.env, self.verify, self.proxy)
        token = _current.set(self)
        try:
            async with asyncio.timeout_at(self.deadline):
                request = httpx.Request(method, _url(url), headers=[*DEFAULT_HEADERS, *headers])
                if cookies:
                    cookies.set_cookie_header(request)
                response = await client.send(request, stream=True)
        except NETWORK_ERRORS as exc:
            self._close_stream()
            raise self.failure(exc) from exc
        finally:
            _current.reset(token)
        self.response = response
        self.stage = STAGE_TRANSFER
        if self._stream is not None and self.first_byte_at is None:
            self.first_byte_at = self._stream.first_data
        if cookies is not None and "set-cookie" in response.headers:
            cookies.extract_cookies(response)
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
        iterator = self.response.aiter_raw()
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
        """The verdict for an exception raised during this exchange, by the stage it hit."""
        if isinstance(exc, ExchangeFailure):
            return exc
        if isinstance(exc, LayerFailure):
            return ExchangeFailure(exc.verdict, exc.detail, self)
        if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
            # A URL we cannot request (a broken Location): no layer below HTTP is to blame.
            return ExchangeFailure(Verdict.HTTP_ERROR, classify.describe(exc), self)
        stage = self.stage
        if isinstance(exc, TimeoutError | httpx.TimeoutException):
            verdict = _TIMEOUT_VERDICTS.get(stage, Verdict.HTTP_TIMEOUT)
            text = f"timed out {_TIMEOUT_TEXT.get(stage, 'in the exchange')}"
            if stage == STAGE_TRANSFER:
                text += f" after {self.bytes_read} bytes"
            return ExchangeFailure(verdict, text, self)
        detail = classify.describe(exc)
        if stage in (STAGE_RESOLVE, STAGE_CONNECT):
            # Only a proxy fails here without LayerFailure: it could not reach the target.
            if isinstance(exc, httpx.ProxyError | httpcore.ProxyError):
                refused = "refused" in str(exc).lower()
                verdict = Verdict.TCP_REFUSED if refused else Verdict.TCP_ERROR
                return ExchangeFailure(verdict, f"proxy: {detail}", self)
            return ExchangeFailure(classify.tcp_failure(exc), detail, self)
        if stage == STAGE_TLS:
            return ExchangeFailure(classify.tls_failure(exc), detail, self)
        return ExchangeFailure(classify.http_failure(exc), detail, self)

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

    # -- called by the transport and backend -------------------------------------------------

    async def connect(self, host: str, port: int) -> TcpConnection:
        """Resolve `host` (through the check's resolver; `address:` for its own host) and
        open TCP to its addresses in turn."""
        self.stage = STAGE_RESOLVE
        self.addresses = await resolve(self.check, self.env, self.deadline, self.phases, host)
        return await self._open_tcp(self.addresses, port)

    async def _open_tcp(self, addresses: list[str], port: int) -> TcpConnection:
        self.stage = STAGE_CONNECT
        try:
            connection = await open_tcp(addresses, port, self.deadline, self.phases)
        except ConnectFailure as failure:
            self.addresses = failure.tried
            raise
        self.addresses = connection.tried
        self.address = connection.address
        return connection

    async def connect_proxy(self, host: str, port: int) -> TcpConnection:
        """TCP to the proxy. Its name is the operator's, not a probed one: it resolves
        through the system, and neither bogons nor `address:` apply."""
        self.via_proxy = True
        self.stage = STAGE_RESOLVE
        started = self._loop.time()
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            try:
                infos = await self._loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                # The vantage point cannot find its own proxy: a DNS symptom, not a bug.
                verdict = _GAI_VERDICTS.get(exc.errno or 0, Verdict.DNS_ERROR)
                raise LayerFailure(verdict, f"proxy {host}: {exc}") from exc
            addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        finally:
            self.phases.add(PHASE_RESOLVE, self._loop.time() - started)
        return await self._open_tcp(addresses, port)

    async def handshake(
        self, connection: TcpConnection, context: ssl.SSLContext, host: str
    ) -> Stream:
        self.stage = STAGE_TLS
        stream = await tls_handshake(connection.sock, context, host, self.deadline, self.phases)
        self.cert_expiry = stream.cert_expiry()
        return self.adopt(stream)

    async def start_tls(self, stream: Stream, context: ssl.SSLContext, host: str) -> Stream:
        self.stage = STAGE_TLS
        await stream.start_tls(context, host, self.deadline, self.phases)
        self.cert_expiry = stream.cert_expiry()
        return stream

    def adopt(self, stream: Stream) -> Stream:
        """Take `stream` as this exchange's connection (closed with it, timed by it)."""
        self._stream = stream
        return stream

    def request_started(self) -> None:
        """The connection is ready and the request goes out now."""
        self.stage = STAGE_FIRST_BYTE
        self.request_sent_at = self._loop.time()
        if self._stream is not None:
            self._stream.mark()

    async def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace hook, used only through proxies, where httpcore drives the
        connection: the request (not the CONNECT to the proxy) starts the first_byte stage."""
        if event == "http11.send_request_headers.started":
            request = info.get("request")
            if request is None or request.method != b"CONNECT":
                self.request_started()


def _url(text: str) -> httpx.URL:
    """Parsed URLs, kept: the same targets come back every run, and parsing one costs as
    much as the rest of building the request."""
    url = _urls.get(text)
    if url is None:
        if len(_urls) >= _URL_CACHE_SIZE:
            _urls.clear()
        url = _urls[text] = httpx.URL(text)
    return url


_URL_CACHE_SIZE = 4096
_urls: dict[str, httpx.URL] = {}


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
    headers: Iterable[tuple[str, str]] = (),
    phases: Phases | None = None,
    cookies: httpx.Cookies | None = None,
) -> AsyncIterator[HttpExchange]:
    """Send one request on a fresh connection; inside the block the response headers are in
    and the body is unread. Raises ExchangeFailure (see the module docstring)."""
    exchange = HttpExchange(check, env, deadline, phases)
    try:
        await exchange.send(url, method, headers, cookies)
        yield exchange
    finally:
        if exchange.response is not None:
            await exchange.response.aclose()
        exchange.close()


# -- httpx client and transport ---------------------------------------------------------------


class _NoCookies(http.cookiejar.CookieJar):
    """The shared client's jar, which keeps nothing: one run's cookies must not leak into
    the next. A redirect chain carries its own cookies (`cookies=` of http_request)."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def set_cookie(self, cookie: http.cookiejar.Cookie) -> None:
        return None


def http_ssl_context(env: ProbeEnv, verify: bool) -> ssl.SSLContext:
    """Like ProbeEnv.ssl_context, plus ALPN for HTTP/1.1. A context of its own, because
    httpcore sets ALPN on the context it is given and the tls probe's must stay as it is."""
    context = ssl.create_default_context()
    if env.config.ca_file:
        context.load_verify_locations(cafile=env.config.ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


def shared_client(env: ProbeEnv, verify: bool, proxy: str | None) -> httpx.AsyncClient:
    """The one client for this (verify, proxy) setting, built on first use."""

    def build() -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=ProbeTransport(env, verify, proxy),
            trust_env=False,
            follow_redirects=False,
            timeout=None,
            cookies=_NoCookies(),
        )

    return env.http_client(("probe-http", verify, proxy), build)


class ProbeTransport(httpx.AsyncBaseTransport):
    """Sends each request over a connection of its own, opened by the current exchange."""

    def __init__(self, env: ProbeEnv, verify: bool, proxy: str | None) -> None:
        self._ssl_context = http_ssl_context(env, verify)
        self._proxy_pool: httpcore.AsyncConnectionPool | None = None
        if proxy is not None:
            proxy_url = httpcore.URL(proxy)
            common: dict[str, Any] = {
                "ssl_context": self._ssl_context,
                "max_connections": None,
                "max_keepalive_connections": 0,
                "http1": True,
                "http2": False,
                "network_backend": ProbeBackend(),
            }
            if proxy_url.scheme == b"socks5":
                self._proxy_pool = httpcore.AsyncSOCKSProxy(proxy_url=proxy_url, **common)
            else:
                self._proxy_pool = httpcore.AsyncHTTPProxy(proxy_url=proxy_url, **common)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        exchange = _current.get()
        if exchange is None:
            raise RuntimeError("ProbeTransport sends only within an HttpExchange")
        if self._proxy_pool is None:
            return await self._direct(request, exchange)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions={**request.extensions, "trace": exchange.trace},
        )
        with _mapped_exceptions():
            core_response = await self._proxy_pool.handle_async_request(core_request)
        return httpx.Response(
            status_code=core_response.status,
            headers=core_response.headers,
            stream=_ResponseStream(core_response.stream),
            extensions=core_response.extensions,
        )

    async def _direct(self, request: httpx.Request, exchange: HttpExchange) -> httpx.Response:
        """HTTP/1.1 with h11 straight over our stream. httpcore would do the same with
        locks, traces and models around it, which cost more CPU than the parsing itself,
        for a connection that carries exactly one request."""
        url = request.url
        https = url.scheme == "https"
        if not https and url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        host = url.host
        connection = await exchange.connect(host, url.port or (443 if https else 80))
        if https:
            stream = await exchange.handshake(connection, self._ssl_context, host)
        else:
            stream = exchange.adopt(await open_stream(connection.sock))
        http11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_HEAD)
        with _mapped_h11_errors():
            head = h11.Request(
                method=request.method, target=url.raw_path, headers=request.headers.raw
            )
            data = http11.send(head) or b""
            body = await request.aread()
            if body:
                data += http11.send(h11.Data(data=body)) or b""
            data += http11.send(h11.EndOfMessage()) or b""
        exchange.request_started()
        stream.write(data)
        while True:
            event = await _next_event(http11, stream)
            if isinstance(event, h11.Response):
                break
            if not isinstance(event, h11.InformationalResponse):  # 100 Continue and such
                raise httpx.RemoteProtocolError(f"unexpected {type(event).__name__}")
        return httpx.Response(
            status_code=event.status_code,
            headers=event.headers.raw_items(),
            stream=_H11Body(http11, stream),
            extensions={
                "http_version": b"HTTP/" + event.http_version,
                "reason_phrase": event.reason,
            },
        )

    async def aclose(self) -> None:
        if self._proxy_pool is not None:
            await self._proxy_pool.aclose()


class ProbeBackend(httpcore.AsyncNetworkBackend):
    """httpcore's way in for proxies: the connection to the proxy, opened by the current
    exchange."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        exchange = _current.get()
        if exchange is None:
            raise RuntimeError("ProbeBackend connects only within an HttpExchange")
        connection = await exchange.connect_proxy(host, port)
        stream = exchange.adopt(await open_stream(connection.sock))
        return _CoreStream(stream, exchange)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.UnsupportedProtocol("unix sockets are not probed")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _CoreStream(httpcore.AsyncNetworkStream):
    """A netconnect Stream as httpcore sees it. httpcore's per-call timeouts are ignored:
    the exchange's deadline bounds everything."""

    def __init__(self, stream: Stream, exchange: HttpExchange) -> None:
        self._stream = stream
        self._exchange = exchange

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._stream.read(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        self._stream.write(buffer)

    async def aclose(self) -> None:
        self._stream.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> httpcore.AsyncNetworkStream:
        host = server_hostname or ""
        await self._exchange.start_tls(self._stream, ssl_context, host)
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return False
        return self._stream.get_extra_info(info)


async def _next_event(http11: h11.Connection, stream: Stream) -> Any:
    """The next h11 event, reading from `stream` as h11 needs more."""
    while True:
        with _mapped_h11_errors():
            event = http11.next_event()
        if event is not h11.NEED_DATA:
            return event
        data = await stream.read(READ_SIZE)
        if not data and http11.their_state is h11.SEND_RESPONSE:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        with _mapped_h11_errors():
            http11.receive_data(data)


class _H11Body(httpx.AsyncByteStream):
    """A response body read through h11; closing it drops the connection."""

    def __init__(self, http11: h11.Connection, stream: Stream) -> None:
        self._http11 = http11
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            event = await _next_event(self._http11, self._stream)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return

    async def aclose(self) -> None:
        self._stream.close()


@contextlib.contextmanager
def _mapped_h11_errors() -> Iterator[None]:
    try:
        yield
    except h11.RemoteProtocolError as exc:
        raise httpx.RemoteProtocolError(str(exc)) from exc
    except h11.LocalProtocolError as exc:
        raise httpx.LocalProtocolError(str(exc)) from exc


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped_exceptions():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        await self._stream.aclose()


@contextlib.contextmanager
def _mapped_exceptions() -> Iterator[None]:
    """httpcore's exceptions as their httpx namesakes (what classify knows), the original
    kept as the cause."""
    try:
        yield
    except httpcore.ProxyError as exc:
        raise httpx.ProxyError(str(exc)) from exc
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.TimeoutException) as exc:
        mapped = getattr(httpx, type(exc).__name__, None)
        if not (isinstance(mapped, type) and issubclass(mapped, httpx.TransportError)):
            mapped = httpx.TransportError
        raise mapped(str(exc)) from exc


__all__ = [
    "ExchangeFailure",
    "HttpExchange",
    "ProbeTransport",
    "http_request",
    "shared_client",
]
