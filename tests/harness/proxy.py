"""A fault-injecting HTTP/1.1 reverse proxy, put between an S3 client and a real server.

``FaultProxy(upstream_url)`` listens on 127.0.0.1 and a free port and forwards every
request faithfully: method, request target (path and query, byte for byte), headers in
the order received (``Host`` included, unchanged, because SigV4 signs it), and body.
Request bodies may come with ``Content-Length`` or chunked; a chunked body is forwarded
chunked. ``Expect: 100-continue`` is answered by the proxy itself (it must read the
body before it can corrupt it) and is not forwarded. Hop-by-hop headers are the
proxy's own business on each side. Each client connection gets its own keep-alive
connection upstream.

Faults are rules that tests switch on at run time (thread-safe); each fires on the next
``count`` matching requests (``count=None``: until `reset`) and then disarms::

    with FaultProxy(server.endpoint_url) as proxy:
        proxy.corrupt_request_bodies(method="PUT", query="partNumber=", count=1)
        ...
        assert proxy.fired("corrupt_request") == 1

A rule matches on method, a substring of the query string and a substring of the path.
Actions: flip one byte in the middle of a request or response body (length unchanged),
answer with an error status without forwarding, reset the connection, or delay the
request. ``proxy.requests`` logs ``(method, target, status)`` of every exchange.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import socketserver
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any, BinaryIO
from urllib.parse import urlsplit

__all__ = ["FaultProxy", "Rule"]

BLOCK = 64 * 1024
UPSTREAM_TIMEOUT = 60.0
IDLE_TIMEOUT = 120.0

# RFC 9110 7.6.1, plus the headers a proxy must not pass on (Expect: see the module doc).
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
        "expect",
    }
)

ACTIONS = ("corrupt_request", "corrupt_response", "status", "reset", "delay")


@dataclass
class Rule:
    """One armed fault: what to do to which requests, and how many more times."""

    action: str
    method: str | None = None
    query: str | None = None
    path: str | None = None
    count: int | None = 1
    status: int = 503
    seconds: float = 0.0
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
        self._rules: list[Rule] = []
        self._fired: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
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
        server.server_close()  # joins the connection threads (block_on_close)

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
        method: str | None = None,
        query: str | None = None,
        path: str | None = None,
        count: int | None = 1,
    ) -> Rule:
        """Answer the next `count` matching requests with `status`, not forwarding them."""
        return self.add_rule(Rule("status", method, query, path, count, status=status))

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

    def reset(self) -> None:
        """Disarm every fault and forget the counters and the request log."""
        with self._lock:
            self._rules.clear()
            self._fired.clear()
            self.requests.clear()

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


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """Threaded TCP server that remembers its open connections so it can cut them."""

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        """Wake every handler blocked on a client socket (idle keep-alive connections)."""
        with self._conn_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Reset(Exception):
    """Drop the client connection with a TCP reset."""


class _UpstreamError(Exception):
    """The upstream server could not be reached or gave no answer."""


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
            if self._upstream is not None:
                self._upstream.close()
                self._upstream = None

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
                self._answer(502, _s3_error(502, str(exc)))
        except (OSError, http.client.HTTPException):
            # The client went away, or upstream failed after the answer had begun.
            self._log(method, target, 0)
            self.close_connection = True

    def _log(self, method: str, target: str, status: int) -> None:
        self._proxy._log(method, target, status)

    def _exchange(self, method: str, target: str) -> None:
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        body = self._read_body(chunked)
        rules = {rule.action: rule for rule in self._proxy._take(method, target)}
        if "delay" in rules and self._proxy._stopping.wait(rules["delay"].seconds):
            raise _Reset
        if "reset" in rules:
            raise _Reset
        if "status" in rules:
            status = rules["status"].status
            self._log(method, target, status)
            self._answer(status, _s3_error(status))
            return
        if "corrupt_request" in rules:
            body = flip_middle_byte(body)
        response = self._forward(method, target, body, chunked)
        try:
            self._log(method, target, response.status)
            self._relay(method, response, corrupt="corrupt_response" in rules)
        finally:
            response.close()
        if response.will_close and self._upstream is not None:
            self._upstream.close()
            self._upstream = None

    def _read_body(self, chunked: bool) -> bytes:
        if chunked:
            return b"".join(_read_chunks(self.rfile))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if len(body) != length:
            raise ConnectionError("client closed the connection mid-body")
        return body

    def _forward(
        self, method: str, target: str, body: bytes, chunked: bool
    ) -> http.client.HTTPResponse:
        for _attempt in (1, 2):
            fresh = self._upstream is None
            if self._upstream is None:
                self._upstream = http.client.HTTPConnection(
                    *self._proxy.upstream, timeout=UPSTREAM_TIMEOUT
                )
            conn = self._upstream
            try:
                conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in _HOP_BY_HOP:
                        conn.putheader(name, value)
                if chunked:
                    conn.putheader("Transfer-Encoding", "chunked")
                    conn.endheaders()
                    if body:
                        conn.send(b"%x\r\n%s\r\n" % (len(body), body))
                    conn.send(b"0\r\n\r\n")
                else:
                    conn.endheaders(body if body or "Content-Length" in self.headers else None)
                return conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._upstream = None
                # Only a reused keep-alive connection that the server had already closed
                # is worth one more try.
                stale = isinstance(exc, ConnectionError | http.client.RemoteDisconnected)
                if fresh or not stale:
                    raise _UpstreamError(f"{type(exc).__name__}: {exc}") from exc
        raise _UpstreamError("the upstream server keeps closing the connection")

    def _relay(self, method: str, response: http.client.HTTPResponse, *, corrupt: bool) -> None:
        status = response.status
        no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
        headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
        length = response.length  # None when chunked or delimited by close
        if no_body or length is not None:
            self._head(status, response.reason, headers)
            if not no_body:
                self._stream(response, length or 0, corrupt=corrupt)
        else:
            data = response.read()
            if corrupt:
                data = flip_middle_byte(data)
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(data))))
            self._head(status, response.reason, headers)
            self.wfile.write(data)
        self.wfile.flush()

    def _stream(self, response: http.client.HTTPResponse, length: int, *, corrupt: bool) -> None:
        middle = length // 2 if corrupt and length else -1
        offset = 0
        while offset < length:
            block = response.read(min(BLOCK, length - offset))
            if not block:
                raise ConnectionError("upstream closed the connection mid-body")
            if offset <= middle < offset + len(block):
                i = middle - offset
                block = block[:i] + bytes([block[i] ^ 0xFF]) + block[i + 1 :]
            self.wfile.write(block)
            offset += len(block)

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


def _read_chunks(rfile: BinaryIO) -> Iterator[bytes]:
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


def _s3_error(status: int, message: str = "injected by the test proxy") -> bytes:
    code = {500: "InternalError", 502: "BadGateway", 503: "SlowDown"}.get(status, str(status))
    message = message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()
