"""A fault-injecting HTTP/1.1 reverse proxy, put between an S3 client and a real server.

``FaultProxy(upstream_url)`` listens on 127.0.0.1 and a free port and forwards every
request faithfully: method, request target (path and query, byte for byte), headers in
the order received (``Host`` included, unchanged, because SigV4 signs it), and body.
Request bodies may come with ``Content-Length`` or chunked; a chunked body is forwarded
chunked (as one chunk). ``Expect: 100-continue`` is forwarded and honoured: the client
hears "100 Continue" when the server says it, and a server that answers early (a 404
before a large part) is relayed without the body, as it would be without the proxy.
Hop-by-hop headers are the proxy's own business on each side. Each client connection
gets its own keep-alive connection upstream.

Faults are rules that tests switch on at run time (thread-safe); each fires on the next
``count`` matching requests (``count=None``: until `reset`) and then disarms::

    with FaultProxy(server.endpoint_url) as proxy:
        proxy.corrupt_request_bodies(method="PUT", query="partNumber=", count=1)
        ...
        assert proxy.fired("corrupt_request") == 1

A rule matches on method, a substring of the query string and a substring of the path.
Actions: flip one byte in the middle of a request or response body (length unchanged);
answer with an error status without forwarding (`throttle_requests`: S3's 503 SlowDown);
reset the connection, before forwarding or after forwarding instead of answering; delay
the request. Faults in the middle of an answer: the head (with the full Content-Length)
and the first half of the body go out, then the connection is closed (truncated body),
reset (TCP RST), or stalled for some seconds before the rest follows. ``proxy.requests``
logs ``(method, target, status)`` of every exchange (status 0: no answer was given), and
``proxy.received`` ``(method, target, headers)`` of every request as it came in (header
names lower-cased).

Besides faults, the proxy can imitate servers that bend the protocol, for as long as it
is told to (`imitate`; `imitate()` with no names goes back to faithful). `DEVIATIONS`:

* ``opaque-etags``: every ETag (headers, listings, multipart completion) is replaced by
  32 hex digits that are no md5 of the content, and answers say
  ``x-amz-server-side-encryption: aws:kms``, as AWS does under SSE-KMS;
* ``no-checksums``: ``x-amz-checksum-*`` headers are stripped from answers;
* ``ignores-if-none-match``: ``If-None-Match`` is stripped from requests (the server
  overwrites where it should refuse; only for servers that do not check signatures);
* ``shuffled-listings``: the objects of each ListObjectsV2 page come in reverse order;
* ``lossy-listings``: the last object of every page but the last is left out. With
  either, listings are asked for in pages of `LISTING_PAGE` keys, so paging shows (this
  breaks the signature of the query: for servers that do not check it, as moto);
* ``no-multipart-listing``: ListMultipartUploads is answered with 500 NotImplemented.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import re
import select
import socket
import socketserver
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType

__all__ = ["DEVIATIONS", "FaultProxy", "Rule"]

BLOCK = 64 * 1024
UPSTREAM_TIMEOUT = 60.0
CONTINUE_WAIT = 1.0  # what botocore waits for "100 Continue" before sending a body anyway
IDLE_TIMEOUT = 120.0

# RFC 9110 7.6.1: headers about one connection, never forwarded.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

ACTIONS = (
    "corrupt_request",
    "corrupt_response",
    "status",
    "reset",
    "drop_response",
    "delay",
    "truncate_response",
    "reset_response",
    "stall_response",
)
#: The faults that cut an answer in the middle of its body.
_BODY_FAULTS = ("truncate_response", "reset_response", "stall_response")

DEVIATIONS = (
    "opaque-etags",
    "no-checksums",
    "ignores-if-none-match",
    "shuffled-listings",
    "lossy-listings",
    "no-multipart-listing",
)
#: The deviations that show in listings; with them, pages hold `LISTING_PAGE` keys.
_LISTING_DEVIATIONS = frozenset({"shuffled-listings", "lossy-listings"})
LISTING_PAGE = 2
#: The deviations that rewrite the XML of a listing or a multipart completion.
_XML_DEVIATIONS = frozenset({"opaque-etags", "shuffled-listings", "lossy-listings"})


@dataclass
class Rule:
    """One armed fault: what to do to which requests, and how many more times."""

    action: str
    method: str | None = None
    query: str | None = None
    path: str | None = None
    count: int | None = 1
    status: int = 503
    code: str | None = None
    seconds: float = 0.0
    message: str | None = None
    fired: int = field(default=0, init=False)

    def matches(self, method: str, path: str, query: str) -> bool:
        return (
            (self.method is None or self.method.upper() == method)
            and (self.query is None or self.query in query)
            and (self.path is None or self.path in path)
        )


def flip_middle_byte(body: bytes) -> bytes:
    """The same bytes with the middle one inverted (an empty body stays empty)."""
    if not body:
        return body
    i = len(body) // 2
    return body[:i] + bytes([body[i] ^ 0xFF]) + body[i + 1 :]


class FaultProxy:
    """A threaded reverse proxy to ``upstream_url`` (``http://host:port``) with faults."""

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http:// URL, got {upstream_url!r}")
        self.upstream = (parts.hostname, parts.port or 80)
        self.port = 0
        self.requests: list[tuple[str, str, int]] = []
        self.received: list[tuple[str, str, dict[str, str]]] = []
        self._rules: list[Rule] = []
        self._fired: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.deviations: frozenset[str] = frozenset()
        #: The real ETag behind each opaque one handed out (for multipart completions).
        self.real_etags: dict[str, str] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FaultProxy:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fault-proxy-{self.port}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, cut every open connection and join every thread."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        assert self._thread is not None
        self._thread.join()
        self._thread = None
        server.cut_connections()
        server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- faults ------------------------------------------------------------------------

    def add_rule(self, rule: Rule) -> Rule:
        if rule.action not in ACTIONS:
            raise ValueError(f"unknown action {rule.action!r}; expected one of {ACTIONS}")
        with self._lock:
            self._rules.append(rule)
        return rule

    def corrupt_request_bodies(
        self,
        *,
        method: str | None = "PUT",
        query: str | None = None,
        path: str | None = None,
        count: int | None = 1,
    ) -> Rule:
        """Flip the middle byte of the next `count` matching request bodies."""
        return self.add_rule(Rule("corrupt_request", method, query, path, count))

    def corrupt_response_bodies(
        self,
        *,
        method: str | None = "GET",
        query: str | None = None,
        path: str | None = None,
        count: int | None = 1,
    ) -> Rule:
        """Flip the middle byte of the next `count` matching response bodies."""
        return self.add_rule(Rule("corrupt_response", method, query, path, count))

    def fail_requests(
        self,
        status: int = 503,
        *,
        code: str | None = None,
        method: str | None = None,
        query: str | None = None,
        path: str | None = None,
        count: int | None = 1,
    ) -> Rule:
        """Answer the next `count` matching requests with `status` and an S3 error document
        (``<Code>`` is `code`, or a usual one for the status), not forwarding them."""
        return self.add_rule(Rule("status", method, query, path, count, status=status, code=code))

    def throttle_requests(
        self,
        *,
        method: str | None = None,
        query: str | None = None,
        path: str | None = None,
        count: int | None = 1,
    ) -> Rule:
        """Answer the next `count` matching requests as S3 does when throttling: 503 with
        the ``SlowDown`` error document, not forwarding them."""
        rule = Rule("status", method, query, path, count, status=503, code="SlowDown")
        rule.message = "Please reduce your request rate."
        return self.add_rule(rule)

    def reset_connections(
        self,
        *,
        method: str | None = None,
        query: str | None = None,
        path: str | None = None,
        count: int | None = 1,
    ) -> Rule:
        """Reset (TCP RST) the connection of the next `count` matching requests."""
        return self.add_rule(Rule("reset", method, query, path, count))

    def drop_responses(
        self,
        *,
        method: str | None = None,
        query: str | None = None,
        path: str | None = None,
        count: int | None = 1,
    ) -> Rule:
        """Forward the next `count` matching requests, then reset the connection instead of
        answering: the server acted on the request but the client never hears of it."""
        return self.add_rule(Rule("drop_response", method, query, path, count))

    def delay_requests(
        self,
        seconds: float,
        *,
        method: str | None = None,
        query: str | None = None,
        path: str | None = None,
        count: int | None = 1,
    ) -> Rule:
        """Hold the next `count` matching requests for `seconds` before forwarding."""
        return self.add_rule(Rule("delay", method, query, path, count, seconds=seconds))

    def truncate_responses(
        self,
        *,
        method: str | None = "GET",
        query: str | None = None,
        path: str | None = None,
        count: int | None = 1,
    ) -> Rule:
        """Forward the next `count` matching requests; answer with the full Content-Length
        but only the first half of the body, then close the connection."""
        return self.add_rule(Rule("truncate_response", method, query, path, count))

    def reset_responses(
        self,
        *,
        method: str | None = "GET",
        query: str | None = None,
        path: str | None = None,
        count: int | None = 1,
    ) -> Rule:
        """Forward the next `count` matching requests; send the head and the first half of
        the body, then reset the connection (TCP RST)."""
        return self.add_rule(Rule("reset_response", method, query, path, count))

    def stall_responses(
        self,
        seconds: float,
        *,
        method: str | None = "GET",
        query: str | None = None,
        path: str | None = None,
        count: int | None = 1,
    ) -> Rule:
        """Forward the next `count` matching requests; send the head and the first half of
        the body, then nothing for `seconds` (cut short by `stop`), then the rest."""
        return self.add_rule(Rule("stall_response", method, query, path, count, seconds=seconds))

    def imitate(self, *deviations: str) -> None:
        """Behave like a server with these `DEVIATIONS` from now on (none: faithfully)."""
        unknown = set(deviations) - set(DEVIATIONS)
        if unknown:
            raise ValueError(f"unknown deviations {sorted(unknown)}; expected some of {DEVIATIONS}")
        self.deviations = frozenset(deviations)

    def opaque_etag(self, etag: str) -> str:
        """32 hex digits derived from `etag` that are no md5 of the content; quotes and a
        multipart ``-N`` suffix are kept."""
        core = etag.strip().replace("&quot;", '"')
        quoted = core.startswith('"')
        core = core.strip('"')
        base, dash, parts = core.partition("-")
        new = hashlib.md5(b"sse-kms:" + base.encode(), usedforsecurity=False).hexdigest()
        with self._lock:
            self.real_etags[new] = base
        new += dash + parts
        return f'"{new}"' if quoted else new

    def real_etag(self, etag: str) -> str:
        """The server's own ETag behind one that `opaque_etag` made (else `etag`)."""
        core = etag.strip().replace("&quot;", '"')
        quoted = core.startswith('"')
        base, dash, parts = core.strip('"').partition("-")
        with self._lock:
            real = self.real_etags.get(base, base) + dash + parts
        return f'"{real}"' if quoted else real

    def reset(self) -> None:
        """Disarm every fault and forget the counters and the request log."""
        with self._lock:
            self._rules.clear()
            self._fired.clear()
            self.requests.clear()
            self.received.clear()

    def fired(self, action: str | None = None) -> int:
        """How many times faults (of `action`) have fired since the last `reset`."""
        with self._lock:
            if action is None:
                return sum(self._fired.values())
            return self._fired.get(action, 0)

    def _take(self, method: str, target: str) -> list[Rule]:
        """The armed rules that fire for this request (at most one per action)."""
        path, _, query = target.partition("?")
        taken: dict[str, Rule] = {}
        with self._lock:
            for rule in self._rules:
                if rule.action in taken or not rule.matches(method, path, query):
                    continue
                taken[rule.action] = rule
                rule.fired += 1
                self._fired[rule.action] = self._fired.get(rule.action, 0) + 1
                if rule.count is not None:
                    rule.count -= 1
            self._rules = [r for r in self._rules if r.count is None or r.count > 0]
        return list(taken.values())

    def _log(self, method: str, target: str, status: int) -> None:
        with self._lock:
            self.requests.append((method, target, status))

    def _receive(self, method: str, target: str, headers: dict[str, str]) -> None:
        with self._lock:
            self.received.append((method, target, headers))


class _Server(socketserver.TCPServer):
    """One thread per connection; remembers its connections so `stop` can cut them."""

    allow_reuse_address = True

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self._connections: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._conn_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"fault-proxy-{self.server_address[1]}-connection",
        )
        with self._conn_lock:
            self._connections.add(request)
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        """End every connection (idle keep-alive ones too) and join their threads."""
        with self._conn_lock:
            connections = list(self._connections)
            threads = list(self._threads)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join()


class _Reset(Exception):
    """Drop the client connection with a TCP reset."""


class _UpstreamError(Exception):
    """The upstream server could not be reached or gave no answer."""


class _Stale(Exception):
    """The upstream connection was closed before it answered; a new one may do better."""


@dataclass
class _Exchange:
    """One request on its way upstream; `body` is None until the client has sent it."""

    method: str
    target: str
    body: bytes | None
    chunked: bool
    corrupt: bool


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT
    server: _Server

    def setup(self) -> None:
        super().setup()
        self._upstream: http.client.HTTPConnection | None = None

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._close_upstream()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log in FaultProxy.requests is enough

    # Every method goes through one handler.
    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):
            return self._proxy_one
        raise AttributeError(name)

    @property
    def _proxy(self) -> FaultProxy:
        return self.server.proxy

    def _proxy_one(self) -> None:
        method, target = self.command, self.path
        try:
            self._exchange(method, target)
        except _Reset:
            self._log(method, target, 0)
            self._reset()
        except _UpstreamError as exc:
            self._log(method, target, 502)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._answer(502, _s3_error(502, message=str(exc)))
        except (OSError, http.client.HTTPException):
            # The client went away, or upstream failed after the answer had begun.
            self._log(method, target, 0)
            self.close_connection = True

    def _log(self, method: str, target: str, status: int) -> None:
        self._proxy._log(method, target, status)

    def handle_expect_100(self) -> bool:
        # Defer: the client hears "100 Continue" only when the upstream server says it.
        return True

    def _exchange(self, method: str, target: str) -> None:
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        expect = self.headers.get("Expect", "").lower() == "100-continue"
        body = None if expect else self._read_body(chunked)
        self._proxy._receive(method, target, {k.lower(): v for k, v in self.headers.items()})
        rules = {rule.action: rule for rule in self._proxy._take(method, target)}
        if "delay" in rules and self._proxy._stopping.wait(rules["delay"].seconds):
            raise _Reset
        if "reset" in rules:
            raise _Reset
        deviations = self._proxy.deviations
        if (
            "no-multipart-listing" in deviations
            and method == "GET"
            and "uploads" in {p.split("=")[0] for p in target.partition("?")[2].split("&")}
        ):
            rules["status"] = Rule(
                "status", status=500, code="NotImplemented", message="not implemented"
            )
        if "status" in rules:
            rule = rules["status"]
            self._log(method, target, rule.status)
            self.close_connection |= expect  # the client's body stays unread
            if rule.message is None:
                self._answer(rule.status, _s3_error(rule.status, rule.code))
            else:
                self._answer(rule.status, _s3_error(rule.status, rule.code, rule.message))
            return
        if deviations & _LISTING_DEVIATIONS and method == "GET" and "list-type=2" in target:
            target = _small_pages(target)  # pages of a few keys, so that paging shows
        if "opaque-etags" in deviations and method == "POST" and body and "uploadId=" in target:
            # A completion names its parts by the ETags the server gave them.
            real = self._proxy.real_etag
            body = _ETAG_XML.sub(
                lambda m: b"<ETag>" + real(m.group(1).decode()).encode() + b"</ETag>", body
            )
        exchange = _Exchange(method, target, body, chunked, "corrupt_request" in rules)
        response = self._forward(exchange)
        if exchange.body is None:
            self.close_connection = True  # answered early: the client's body stays unread
        try:
            if "drop_response" in rules:
                response.read()
                raise _Reset
            self._log(method, target, response.status)
            cut = next((rules[a] for a in _BODY_FAULTS if a in rules), None)
            self._relay(
                method, response, corrupt="corrupt_response" in rules, cut=cut, target=target
            )
        finally:
            response.close()
            if response.will_close or exchange.body is None:
                self._close_upstream()

    def _read_body(self, chunked: bool) -> bytes:
        if chunked:
            return b"".join(_read_chunks(self.rfile))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if len(body) != length:
            raise ConnectionError("client closed the connection mid-body")
        return body

    def _client_body(self, exchange: _Exchange) -> bytes:
        """The request body (read on first use, after a deferred "100 Continue")."""
        if exchange.body is None:
            self.send_response_only(100)
            self.end_headers()
            self.wfile.flush()
            exchange.body = self._read_body(exchange.chunked)
            if exchange.corrupt:
                exchange.body = flip_middle_byte(exchange.body)
        return exchange.body

    def _forward(self, exchange: _Exchange) -> http.client.HTTPResponse:
        """Send the request upstream; return the upstream's final response."""
        if exchange.body is not None and exchange.corrupt:
            exchange.body = flip_middle_byte(exchange.body)
        for _attempt in (1, 2):
            reused = False
            try:
                conn, reused = self._upstream_connection()
                return self._send(conn, exchange)
            except _Stale as exc:
                self._close_upstream()
                if not reused:
                    raise _UpstreamError(str(exc)) from None
            except (OSError, http.client.HTTPException) as exc:
                self._close_upstream()
                raise _UpstreamError(f"{type(exc).__name__}: {exc}") from exc
        raise _UpstreamError("the upstream server keeps closing the connection")

    def _upstream_connection(self) -> tuple[http.client.HTTPConnection, bool]:
        conn = self._upstream
        if conn is not None and conn.sock is not None:
            # An idle connection has nothing to say; if it is readable, it was closed.
            readable, _, _ = select.select([conn.sock], [], [], 0)
            if not readable:
                return conn, True
            self._close_upstream()
        conn = self._upstream = http.client.HTTPConnection(
            *self._proxy.upstream, timeout=UPSTREAM_TIMEOUT
        )
        conn.connect()
        return conn, False

    def _send(
        self, conn: http.client.HTTPConnection, exchange: _Exchange
    ) -> http.client.HTTPResponse:
        expect = exchange.body is None
        conn.putrequest(exchange.method, exchange.target, skip_host=True, skip_accept_encoding=True)
        strip_inm = "ignores-if-none-match" in self._proxy.deviations
        for name, value in self.headers.items():
            lower = name.lower()
            if lower not in _HOP_BY_HOP and not (strip_inm and lower == "if-none-match"):
                conn.putheader(name, value)
        if exchange.chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        if expect and not _await_continue(conn):
            return conn.getresponse()  # a final answer before the body, as RFC 9110 allows
        body = self._client_body(exchange)
        try:
            if exchange.chunked:
                if body:
                    conn.send(b"%x\r\n%s\r\n" % (len(body), body))
                conn.send(b"0\r\n\r\n")
            elif body or "Content-Length" in self.headers:
                conn.send(body)
        except OSError:
            # The server may have answered early and closed (say, a 404 before a large
            # body): relay that answer if it can still be read.
            pass
        try:
            return conn.getresponse()
        except (ConnectionError, http.client.RemoteDisconnected) as exc:
            raise _Stale(f"upstream closed the connection: {exc}") from exc

    def _close_upstream(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
            self._upstream = None

    def _relay(
        self,
        method: str,
        response: http.client.HTTPResponse,
        *,
        corrupt: bool,
        cut: Rule | None = None,
        target: str = "",
    ) -> None:
        status = response.status
        no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
        headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
        length = response.length  # None when chunked or delimited by close
        deviations = self._proxy.deviations
        if deviations:
            headers = _deviate_headers(self._proxy, headers, status)
        query = target.partition("?")[2]
        rewrite = (
            status == 200
            and deviations & _XML_DEVIATIONS
            and (
                (method == "GET" and "list-type=2" in query)
                or (method == "POST" and "uploadId=" in query)
            )
        )
        if rewrite:
            data = _deviate_xml(self._proxy, response.read())
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(data))))
            self._head(status, response.reason, headers)
            self._stream(io.BytesIO(data), len(data), corrupt=False, cut=cut)
        elif no_body or length is not None:
            self._head(status, response.reason, headers)
            if not no_body:
                self._stream(response, length or 0, corrupt=corrupt, cut=cut)
        else:
            data = response.read()
            if corrupt:
                data = flip_middle_byte(data)
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(data))))
            self._head(status, response.reason, headers)
            self._stream(io.BytesIO(data), len(data), corrupt=False, cut=cut)
        if not self.wfile.closed:
            self.wfile.flush()

    def _stream(
        self,
        source: http.client.HTTPResponse | io.BytesIO,
        length: int,
        *,
        corrupt: bool,
        cut: Rule | None = None,
    ) -> None:
        """Relay `length` body bytes; `cut` (a body fault) strikes after the first half."""
        middle = length // 2 if corrupt and length else -1
        cut_at = length // 2 if cut is not None and length else -1
        offset = 0
        while offset < length:
            if offset == cut_at:
                assert cut is not None
                cut_at = -1
                if not self._cut(cut):
                    return
            end = min(offset + BLOCK, length)
            if offset < cut_at < end:
                end = cut_at
            block = source.read(end - offset)
            if not block:
                raise ConnectionError("upstream closed the connection mid-body")
            if offset <= middle < offset + len(block):
                i = middle - offset
                block = block[:i] + bytes([block[i] ^ 0xFF]) + block[i + 1 :]
            self.wfile.write(block)
            offset += len(block)

    def _cut(self, rule: Rule) -> bool:
        """Strike a body fault after what was sent so far; True if the rest should follow."""
        self.wfile.flush()
        if rule.action == "stall_response" and not self._proxy._stopping.wait(rule.seconds):
            return True
        self._close_upstream()  # the rest of the upstream answer is never read
        if rule.action == "truncate_response":
            # A clean end of stream (FIN), short of the announced Content-Length.
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_WR)
        else:
            self._reset()
        return False

    def _head(self, status: int, reason: str, headers: list[tuple[str, str]]) -> None:
        self.send_response_only(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

    def _answer(self, status: int, body: bytes) -> None:
        headers = [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))]
        self._head(status, http.client.responses.get(status, ""), headers)
        self.wfile.write(body)
        self.wfile.flush()

    def _reset(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()


def _small_pages(target: str) -> str:
    """`target` asking for pages of `LISTING_PAGE` keys (breaks a signature that covers
    the query: for servers that do not check signatures, as moto's)."""
    path, _, query = target.partition("?")
    params = [p for p in query.split("&") if not p.startswith("max-keys=")]
    return path + "?" + "&".join([*params, f"max-keys={LISTING_PAGE}"])


def _deviate_headers(
    proxy: FaultProxy, headers: list[tuple[str, str]], status: int
) -> list[tuple[str, str]]:
    deviations = proxy.deviations
    out = []
    for name, value in headers:
        lower = name.lower()
        if "no-checksums" in deviations and lower.startswith("x-amz-checksum-"):
            continue
        if "opaque-etags" in deviations:
            if lower == "x-amz-server-side-encryption":
                continue
            if lower == "etag":
                value = proxy.opaque_etag(value)
        out.append((name, value))
    if "opaque-etags" in deviations and status < 300:
        out.append(("x-amz-server-side-encryption", "aws:kms"))
    return out


_ETAG_XML = re.compile(rb"<ETag>(.*?)</ETag>", re.DOTALL)
_CONTENTS_XML = re.compile(rb"<Contents>.*?</Contents>", re.DOTALL)


def _deviate_xml(proxy: FaultProxy, body: bytes) -> bytes:
    """A listing or multipart completion as a deviating server would answer it."""
    deviations = proxy.deviations
    if "opaque-etags" in deviations:
        body = _ETAG_XML.sub(
            lambda m: b"<ETag>" + proxy.opaque_etag(m.group(1).decode()).encode() + b"</ETag>", body
        )
    entries = _CONTENTS_XML.findall(body)
    if not entries:
        return body
    if "lossy-listings" in deviations and b"<IsTruncated>true</IsTruncated>" in body:
        entries = [*entries[:-1], b""]
    if "shuffled-listings" in deviations:
        entries.reverse()
    pieces = _CONTENTS_XML.split(body)
    out = [pieces[0]]
    for entry, piece in zip(entries, pieces[1:], strict=True):
        out += [entry, piece]
    return b"".join(out)


def _await_continue(conn: http.client.HTTPConnection) -> bool:
    """After request headers with ``Expect: 100-continue``: should the body follow?

    True when the server says "100 Continue" (consumed here) or stays silent for
    CONTINUE_WAIT seconds (clients then send the body anyway); False when it has begun
    a final answer, which ``conn.getresponse()`` then reads.
    """
    sock = conn.sock
    assert sock is not None
    if not select.select([sock], [], [], CONTINUE_WAIT)[0]:
        return True
    deadline = time.monotonic() + UPSTREAM_TIMEOUT
    while True:
        head = sock.recv(BLOCK, socket.MSG_PEEK)
        if not head:
            raise _Stale("upstream closed the connection")
        if b"\r\n\r\n" in head or len(head) >= BLOCK:
            break
        if time.monotonic() > deadline:
            raise TimeoutError("upstream sent an incomplete response head")
        time.sleep(0.001)  # a head split across packets: wait for the rest
    if head.split(b" ", 2)[1:2] != [b"100"]:
        return False
    sock.recv(head.index(b"\r\n\r\n") + 4)
    return True


def _read_chunks(rfile: io.BufferedIOBase) -> Iterator[bytes]:
    """The data of a chunked body (extensions and trailers are read and dropped)."""
    while True:
        line = rfile.readline(65537)
        if not line:
            raise ConnectionError("client closed the connection mid-body")
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass
            return
        data = rfile.read(size)
        if len(data) != size:
            raise ConnectionError("client closed the connection mid-body")
        rfile.readline(65537)  # the CRLF after the chunk
        yield data


def _s3_error(
    status: int, code: str | None = None, message: str = "injected by the test proxy"
) -> bytes:
    usual = {400: "BadRequest", 403: "AccessDenied", 404: "NoSuchKey", 500: "InternalError"}
    usual |= {502: "BadGateway", 503: "SlowDown"}
    code = code or usual.get(status, str(status))
    message = message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()
