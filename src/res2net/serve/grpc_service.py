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

from res2net.serve.config import ServeConfig
from res2net.serve.errors import ServeError
from res2net.serve.middleware import access_log
from res2net.serve.oip_grpc import decode_grpc_message, encode_grpc_response, parse_grpc_request
from res2net.serve.proto import grpc_predict_v2_pb2 as pb
from res2net.serve.service import InferenceService

log = logging.getLogger(__name__)
SERVICE = "inference.GRPCInferenceService"


class InferenceServicer:
    """The six unary methods of ``GRPCInferenceService``, each taking the *serialized* request.

    grpc's own deserialization would answer undecodable bytes with UNKNOWN; decoding here makes them
    the client's INVALID_ARGUMENT, with the decoder's reason.
    """

    def __init__(self, service: InferenceService):
        self.service = service
        self.methods = {
            "ServerLive": self._server_live,
            "ServerReady": self._server_ready,
            "ModelReady": self._model_ready,
            "ServerMetadata": self._server_metadata,
            "ModelMetadata": self._model_metadata,
            "ModelInfer": self._model_infer,
        }

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        """Method name -> handler taking raw bytes, for every method of the service descriptor."""
        out = {}
        for m in pb.DESCRIPTOR.services_by_name[SERVICE.split(".")[-1]].methods:
            request_type, response_type = getattr(pb, m.input_type.name), getattr(pb, m.output_type.name)
            out[m.name] = grpc.unary_unary_rpc_method_handler(
                self._handler(m.name, request_type, self.methods[m.name]),
                request_deserializer=None,  # bytes: decoded in _call
                response_serializer=response_type.SerializeToString,
            )
        return out

    def _handler(self, method: str, request_type, fn):
        async def handle(raw: bytes, context: grpc.aio.ServicerContext):
            async def run():
                return await fn(decode_grpc_message(raw, request_type), context)

            return await self._call(method, context, run)

        return handle

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
            self._record(method, context, code, time.perf_counter() - start)

    def _record(self, method: str, context, code: grpc.StatusCode, elapsed: float) -> None:
        route = f"grpc:{method}"
        m = self.service.metrics
        m.requests.labels(route, "POST", code.name).inc()
        m.latency.labels(route).observe(elapsed)
        if self.service.cfg.access_log and access_log.isEnabledFor(logging.INFO):
            line = {
                "ts": round(time.time(), 3),
                "proto": "grpc",
                "client": context.peer(),
                "method": method,
                "route": route,
                "status": code.name,
                "latency_ms": round(elapsed * 1000, 2),
            }
            access_log.info(json.dumps(line))

    async def _server_live(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def _server_ready(self, request, context):
        return pb.ServerReadyResponse(ready=self.service.ready and not self.service.draining)

    async def _model_ready(self, request, context):
        return pb.ModelReadyResponse(ready=self.service.model_ready(request.name, request.version))

    async def _server_metadata(self, request, context):
        return pb.ServerMetadataResponse(**self.service.server_metadata())

    async def _model_metadata(self, request, context):
        self.service.resolve_model(request.name, request.version)
        meta = self.service.model_metadata()
        resp = pb.ModelMetadataResponse(name=meta["name"], versions=meta["versions"], platform=meta["platform"])
        for t in meta["inputs"]:
            resp.inputs.add(**t)
        for t in meta["outputs"]:
            resp.outputs.add(**t)
        return resp

    async def _model_infer(self, request, context):
        req = parse_grpc_request(request)
        remaining = context.time_remaining()
        if remaining is not None and "timeout" not in req.parameters:
            req.parameters["timeout"] = max(1, int(remaining * 1e6))  # honour the client's deadline
        return encode_grpc_response(await self.service.infer(req), pb)


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
    handlers = InferenceServicer(service).handlers()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
    address = grpc_address(cfg.host, cfg.grpc_port)
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as e:
        raise ServeError(f"cannot listen for gRPC on {address}: {e}") from None
    if bound == 0:
        raise ServeError(f"cannot listen for gRPC on {address} (port in use?)")
    return server
