"""The raw-ASGI layer in front of every HTTP route: body limits, request ids, metrics and access logs.

Per request it enforces what a route cannot: the body-size limit (413, from ``Content-Length`` when
there is one, else while streaming) and the body deadline (408 when the body has not arrived
``body_timeout_s`` after the headers: a client that dribbles its body holds a connection no longer).
A client that hangs up mid-body is not a server error: it gets one log line and is counted apart
(``res2net_client_disconnects``, status ``499`` in ``res2net_requests``), never a 500 with a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid

from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect

from res2net.serve.errors import PayloadTooLarge, RequestTimeout
from res2net.serve.service import InferenceService

log = logging.getLogger("res2net.serve")
access_log = logging.getLogger("res2net.serve.access")

CLIENT_CLOSED = 499  # nginx's status for "client closed the request": there was no response


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def paddle_error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"err_no": status, "err_msg": message, "key": [], "value": [], "tensors": []}
    return JSONResponse(body, status_code=status, headers=headers)


def is_paddle_route(path: str) -> bool:
    return path.rstrip("/").endswith("/prediction")


class ServerMiddleware:
    """Body limit (413) and deadline (408), request ids, per-route metrics, structured access logs."""

    def __init__(self, app, service: InferenceService):
        self.app = app
        self.service = service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = headers.get("x-request-id", "")[:64] or uuid.uuid4().hex[:16]
        cfg = self.service.cfg
        limit, deadline = cfg.max_body_bytes, start + cfg.body_timeout_s
        state = {"status": 500, "in": 0, "out": 0, "started": False, "body_done": False}

        async def guarded_receive():
            if state["body_done"]:  # later calls only wait for a disconnect: no deadline on those
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.perf_counter()))
            except asyncio.TimeoutError:
                self.service.metrics.rejected.labels("body_timeout").inc()
                raise RequestTimeout(
                    f"request body not received within {cfg.body_timeout_s:g} s (--body-timeout)"
                ) from None
            if message["type"] == "http.request":
                state["in"] += len(message.get("body", b""))
                if state["in"] > limit:
                    raise PayloadTooLarge(f"request body over the {limit // 1024 // 1024} MB limit")
                state["body_done"] = not message.get("more_body", False)
            return message

        async def tracking_send(message):
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
                MutableHeaders(scope=message).append("x-request-id", request_id)
            elif message["type"] == "http.response.body":
                state["out"] += len(message.get("body", b""))
            await send(message)

        try:
            declared = int(headers.get("content-length", "0") or 0)
        except ValueError:
            declared = 0
        try:
            if declared > limit:
                self.service.metrics.rejected.labels("body_too_large").inc()
                message = f"request body of {declared} bytes is over the {limit // 1024 // 1024} MB limit"
                make = paddle_error_response if is_paddle_route(scope["path"]) else error_response
                await make(413, message, {"connection": "close"})(scope, receive, tracking_send)
            else:
                await self.app(scope, guarded_receive, tracking_send)
        except PayloadTooLarge as e:  # raised while streaming, outside a route's own handling
            if not state["started"]:
                await error_response(413, e.message, {"connection": "close"})(scope, receive, tracking_send)
        except ClientDisconnect:
            state["status"] = CLIENT_CLOSED
            self.service.metrics.client_disconnects.labels(_template(scope)).inc()
            log.info("%s %s: client disconnected after %d body bytes", scope["method"], scope["path"], state["in"])
        finally:
            self._record(scope, state, request_id, time.perf_counter() - start)

    def _record(self, scope, state: dict, request_id: str, elapsed: float) -> None:
        template = _template(scope)
        m = self.service.metrics
        m.requests.labels(template, scope["method"], str(state["status"])).inc()
        m.latency.labels(template).observe(elapsed)
        if self.service.cfg.access_log and access_log.isEnabledFor(logging.INFO):
            client = scope.get("client") or ("", 0)
            line = {
                "ts": round(time.time(), 3),
                "proto": "http",
                "request_id": request_id,
                "client": f"{client[0]}:{client[1]}",
                "method": scope["method"],
                "path": scope["path"],
                "route": template,
                "status": state["status"],
                "bytes_in": state["in"],
                "bytes_out": state["out"],
                "latency_ms": round(elapsed * 1000, 2),
            }
            access_log.info(json.dumps(line))


def _template(scope) -> str:
    return getattr(scope.get("route"), "path", None) or "unmatched"
