"""Errors the server answers with: one exception type per HTTP status, mapped the same way to gRPC.

REST answers ``{"error": "<message>"}`` with the status below; gRPC aborts with the code below and
the same message; the PaddleServing route wraps the message in its ``err_no``/``err_msg`` envelope.
"""

from __future__ import annotations

import grpc

from res2net.errors import Res2NetError


class ServeError(Res2NetError):
    """A request the server will not (or cannot now) answer; ``status`` is the HTTP status."""

    status = 500
    grpc_code = grpc.StatusCode.INTERNAL
    headers: dict[str, str] = {}

    def __init__(self, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if headers:
            self.headers = headers


class BadRequest(ServeError):
    """The request is malformed: bad image, wrong tensor shape or datatype, bad JSON."""

    status = 400
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServeError):
    """Unknown model name or version."""

    status = 404
    grpc_code = grpc.StatusCode.NOT_FOUND


class RequestTimeout(ServeError):
    """The client did not send its request body in time (slow or stalled upload); the connection closes."""

    status = 408
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    headers = {"connection": "close"}


class PayloadTooLarge(ServeError):
    """Request body (or its decompressed form, or its image count) over the configured limit."""

    status = 413
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ServeError):
    """Queue full, model not loaded yet, or server draining: retry later (``Retry-After``)."""

    status = 503
    grpc_code = grpc.StatusCode.UNAVAILABLE

    def __init__(self, message: str, retry_after_s: int = 1):
        super().__init__(message, {"Retry-After": str(retry_after_s)})


class QueueFull(Unavailable):
    """Backpressure: the bounded queue is full. gRPC says RESOURCE_EXHAUSTED, as Triton does."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Timeout(ServeError):
    """The request did not finish within the per-request timeout."""

    status = 504
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
