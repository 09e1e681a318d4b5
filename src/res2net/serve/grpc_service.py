"""The gRPC side: the standard ``inference.GRPCInferenceService`` on ``grpc.aio``, same event loop.

Errors map as REST's do (see ``errors.py``); a full queue is ``RESOURCE_EXHAUSTED`` with a
``retry-after`` trailer. gRPC's own limits back ours up: messages over the body limit are refused
by grpc itself, and at most ``connection_limit`` RPCs run at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import grpc

from res2net.serve.app import access_log
from res2net.serve.config import ServeConfig
from res2net.serve.errors import ServeError
from res2net.serve.oip import encode_grpc_response, parse_grpc_request
from res2net.serve.proto import grpc_predict_v2_pb2 as pb
from res2net.serve.proto import grpc_predict_v2_pb2_grpc as pb_grpc
from res2net.serve.service import InferenceService

log = logging.getLogger(__name__)


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, service: InferenceService):
        self.service = service

    async def _call(self, method: str, context: grpc.aio.ServicerContext, fn):
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return await fn()
        except ServeError as e:
            code = e.grpc_code
            trailers = tuple((k.lower(), v) for k, v in e.headers.items())
            await context.abort(code, e.message, trailing_metadata=trailers)
        except asyncio.CancelledError:  # the client went away or its deadline passed
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("gRPC %s failed", method)
            await context.abort(code, "internal server error")
        finally:
            elapsed = time.perf_counter() - start
            route = f"grpc:{method}"
            m = self.service.metrics
            m.requests.labels(route, "POST", code.name).inc()
            m.latency.labels(route).observe(elapsed)
            if self.service.cfg.access_log and access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    json.dumps(
                        {
                            "ts": round(time.time(), 3),
                            "proto": "grpc",
                            "client": context.peer(),
                            "method": method,
                            "route": route,
                            "status": code.name,
                            "latency_ms": round(elapsed * 1000, 2),
                        }
                    )
                )

    async def ServerLive(self, request, context):
        return await self._call("ServerLive", context, self._live)

    async def _live(self):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        async def run():
            return pb.ServerReadyResponse(ready=self.service.ready and not self.service.draining)

        return await self._call("ServerReady", context, run)

    async def ModelReady(self, request, context):
        async def run():
            return pb.ModelReadyResponse(ready=self.service.model_ready(request.name, request.version))

        return await self._call("ModelReady", context, run)

    async def ServerMetadata(self, request, context):
        async def run():
            return pb.ServerMetadataResponse(**self.service.server_metadata())

        return await self._call("ServerMetadata", context, run)

    async def ModelMetadata(self, request, context):
        async def run():
            self.service.resolve_model(request.name, request.version)
            meta = self.service.model_metadata()
            resp = pb.ModelMetadataResponse(name=meta["name"], versions=meta["versions"], platform=meta["platform"])
            for t in meta["inputs"]:
                resp.inputs.add(**t)
            for t in meta["outputs"]:
                resp.outputs.add(**t)
            return resp

        return await self._call("ModelMetadata", context, run)

    async def ModelInfer(self, request, context):
        async def run():
            req = parse_grpc_request(request)
            remaining = context.time_remaining()
            if remaining is not None and "timeout" not in req.parameters:
                req.parameters["timeout"] = max(1, int(remaining * 1e6))  # honour the client's deadline
            return encode_grpc_response(await self.service.infer(req), pb)

        return await self._call("ModelInfer", context, run)


def grpc_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def create_grpc_server(service: InferenceService, cfg: ServeConfig, reuse_port: bool = False) -> grpc.aio.Server:
    """A started-later ``grpc.aio`` server bound to ``cfg.grpc_port`` (raises ServeError if it cannot bind)."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", cfg.max_body_bytes),
            ("grpc.max_send_message_length", 256 * 1024 * 1024),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ],
        maximum_concurrent_rpcs=cfg.connection_limit,
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(service), server)
    address = grpc_address(cfg.host, cfg.grpc_port)
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as e:
        raise ServeError(f"cannot listen for gRPC on {address}: {e}") from None
    if bound == 0:
        raise ServeError(f"cannot listen for gRPC on {address} (port in use?)")
    return server
