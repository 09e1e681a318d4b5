"""Slow clients cannot starve the others: a deadline on request headers, and eviction at the connection cap.

uvicorn closes idle keep-alive connections, but not one whose client sends its request headers a byte
at a time ("slowloris"): such a connection lives as long as the client likes, and once enough of
them are open, uvicorn's ``limit_concurrency`` answers every new client — health probes included —
503. So the server's HTTP protocol (uvicorn's httptools one, plus two rules) enforces:

* **header deadline**: the request line and headers must be complete ``header_timeout_s`` after the
  connection opened (or after the first byte of a later request on a kept-alive connection); a late
  client gets ``408`` and the connection is closed. Dribbling bytes does not extend the deadline.
* **connection cap**: beyond ``max_connections`` open connections, a new connection closes the
  longest-idle one (waiting for its headers, or idle between keep-alive requests) — so a health
  probe or a real client always gets in, and a flood of slow sockets only displaces its own. If every
  connection is busy with a request in progress, the newcomer gets ``503`` instead.

* **lingering close**: a connection closed while the client is still sending its request body (a
  ``413`` answered from ``Content-Length``, or mid-stream) is not closed at once: closing a socket
  with unread bytes makes the kernel reset it, and the reset throws away the answer the client had not
  yet read. So the server sends its answer, half-closes (FIN), and reads and discards what still comes
  until the client closes, for at most :data:`LINGER_S` seconds and :data:`LINGER_BYTES` bytes (as
  nginx's ``lingering_close`` does).

The body has its own deadline (``body_timeout_s``), enforced per request by
:class:`res2net.serve.middleware.ServerMiddleware`.
"""

from __future__ import annotations

import asyncio
import json
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from res2net.serve.metrics import Metrics

log = logging.getLogger("res2net.serve")

LINGER_S = 5.0  # how long a closing connection keeps discarding an unread request body
LINGER_BYTES = 256 * 1024 * 1024  # and how much of it, at most: a client cannot keep one open forever


class ConnectionGuard:
    """The server-wide state of the two rules: which connections are idle, oldest first."""

    def __init__(self, max_connections: int, header_timeout_s: float, metrics: Metrics):
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.metrics = metrics
        self.idle: dict[GuardedProtocol, None] = {}  # insertion order: the longest idle first

    def protocol(self) -> type[GuardedProtocol]:
        """The protocol class to give ``uvicorn.Config(http=...)``, bound to this guard."""
        return type("GuardedHttpToolsProtocol", (GuardedProtocol,), {"guard": self})

    def make_room(self, newcomer: GuardedProtocol) -> bool:
        """Called when ``newcomer`` connected: close the longest-idle connection if over the cap.
        False if none can go (all busy): the newcomer itself is then refused."""
        if len(newcomer.connections) <= self.max_connections:
            return True
        victim = next((p for p in self.idle if p is not newcomer and not p.in_request), None)
        if victim is None:
            self.metrics.rejected.labels("connection_limit").inc()
            return False
        self.metrics.rejected.labels("connection_evicted").inc()
        victim.close_with(503, f"server at its limit of {self.max_connections} connections; this one was idle")
        return True

    def set_idle(self, p: GuardedProtocol, idle: bool) -> None:
        self.idle.pop(p, None)
        if idle:
            self.idle[p] = None


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the header deadline and the connection cap (module docstring)."""

    guard: ConnectionGuard  # set by ConnectionGuard.protocol()
    _header_timer: asyncio.TimerHandle | None = None
    _body_unread = False  # a request's headers arrived but not yet the end of its body

    @property
    def in_request(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.transport = LingeringTransport(transport, self)  # what uvicorn's request cycles close
        self.guard.metrics.connections.inc()
        self._await_headers()
        if not self.guard.make_room(self):
            self.close_with(503, f"server at its limit of {self.guard.max_connections} busy connections")

    def connection_lost(self, exc) -> None:
        self.transport.stop_lingering()
        self._stop_header_timer()
        self.guard.set_idle(self, False)
        self.guard.metrics.connections.dec()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._await_headers()

    def data_received(self, data: bytes) -> None:
        if self.transport.lingering:
            self.transport.discard(len(data))
        else:
            super().data_received(data)

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        self.guard.set_idle(self, False)
        self._body_unread = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._body_unread = False
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():  # kept alive: idle (uvicorn's keep-alive timeout applies)
            self.guard.set_idle(self, True)

    def _await_headers(self) -> None:
        self.guard.set_idle(self, True)
        if self._header_timer is None:  # a deadline, not an idle timer: more bytes do not extend it
            self._header_timer = self.loop.call_later(self.guard.header_timeout_s, self._headers_too_slow)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        self.guard.metrics.rejected.labels("header_timeout").inc()
        log.debug("%s: request headers not complete within %gs, closing", self.client, self.guard.header_timeout_s)
        self.close_with(408, f"request headers not received within {self.guard.header_timeout_s:g} s")

    def close_with(self, status: int, message: str) -> None:
        """Close this connection, first answering ``status`` if a request is awaited on it (a connection
        idle between keep-alive requests is closed silently, as keep-alive timeouts are)."""
        awaiting_request = self._header_timer is not None and not self.in_request
        self._stop_header_timer()
        self.guard.set_idle(self, False)
        if self.transport.is_closing():
            self.transport.abort_lingering()  # one discarding an unread body goes now
            return
        if awaiting_request:
            body = json.dumps({"error": message}).encode()
            reason = {408: "Request Timeout", 503: "Service Unavailable"}[status]
            head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            head += f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
            self.transport.write(head.encode() + body)
        self.transport.abort_lingering()


class LingeringTransport:
    """The connection's asyncio transport, whose ``close()`` lingers while a request body is unread.

    uvicorn closes the transport as soon as a ``connection: close`` answer is written; this wrapper
    turns that into: flush the answer, half-close, discard the rest of the body (bounded), then close.
    Everything else is the wrapped transport's.
    """

    def __init__(self, transport: asyncio.Transport, protocol: GuardedProtocol):
        self._transport = transport
        self._protocol = protocol
        self._timer: asyncio.TimerHandle | None = None
        self.lingering = False
        self.discarded = 0

    def __getattr__(self, name: str):
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def close(self) -> None:
        if self.lingering or self._transport.is_closing() or not self._protocol._body_unread:
            self.abort_lingering()
            return
        self.lingering = True
        self._protocol.guard.set_idle(self._protocol, True)  # the first to go if the table is full
        self._timer = self._protocol.loop.call_later(LINGER_S, self.abort_lingering)
        if self._transport.can_write_eof():
            self._transport.write_eof()  # the FIN follows the answer once the write buffer drains
        self._transport.resume_reading()  # uvicorn pauses reading when a body outgrows its buffer

    def discard(self, n: int) -> None:
        self.discarded += n
        if self.discarded > LINGER_BYTES:
            self.abort_lingering()

    def abort_lingering(self) -> None:
        """Close now (the answer already written is still flushed first)."""
        self.stop_lingering()
        self._transport.close()

    def stop_lingering(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
