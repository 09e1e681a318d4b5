"""The REST side: OIP v2 routes, ``/v1/classify``, the PaddleServing route, metrics and the web demo.

Error bodies: ``{"error": "<what is wrong>"}`` (OIP and ``/v1``), or PaddleServing's envelope on
its route. A pure-ASGI middleware in front of everything enforces the body-size limit (413, from
the ``Content-Length`` header when there is one, else while streaming), tags each request with an
id, records metrics by route template, and writes one JSON access-log line per request.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from res2net.data.image import ImageError
from res2net.serve.errors import BadRequest, PayloadTooLarge, ServeError
from res2net.serve.oip import BINARY_HEADER, encode_rest_response, parse_rest_request
from res2net.serve.service import InferenceService

log = logging.getLogger(__name__)
access_log = logging.getLogger("res2net.serve.access")

STATIC_DIR = Path(__file__).with_name("static")
PADDLE_IMAGE_OP = "imagenet"  # PaddleClas's pipeline op name: its clients POST /imagenet/prediction
# The demo page loads nothing from elsewhere; say so to the browser too.
DEMO_CSP = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; connect-src 'self'"


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _paddle_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"err_no": status, "err_msg": message, "key": [], "value": [], "tensors": []}
    return JSONResponse(body, status_code=status, headers=headers)


def _is_paddle_route(path: str) -> bool:
    return path.rstrip("/").endswith("/prediction")


class ServerMiddleware:
    """Body limit (413), request ids, per-route metrics and structured access logs, as raw ASGI."""

    def __init__(self, app, service: InferenceService):
        self.app = app
        self.service = service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = headers.get("x-request-id", "")[:64] or uuid.uuid4().hex[:16]
        limit = self.service.cfg.max_body_bytes
        state = {"status": 500, "in": 0, "out": 0, "started": False}

        async def limited_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["in"] += len(message.get("body", b""))
                if state["in"] > limit:
                    raise PayloadTooLarge(f"request body over the {limit // 1024 // 1024} MB limit")
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
                make = _paddle_error if _is_paddle_route(scope["path"]) else _error
                await make(413, message, {"connection": "close"})(scope, receive, tracking_send)
            else:
                await self.app(scope, limited_receive, tracking_send)
        except PayloadTooLarge as e:  # raised while streaming, outside a route's own handling
            if not state["started"]:
                await _error(413, e.message, {"connection": "close"})(scope, receive, tracking_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            elapsed = time.perf_counter() - start
            m = self.service.metrics
            m.requests.labels(template, scope["method"], str(state["status"])).inc()
            m.latency.labels(template).observe(elapsed)
            if self.service.cfg.access_log and access_log.isEnabledFor(logging.INFO):
                client = scope.get("client") or ("", 0)
                access_log.info(
                    json.dumps(
                        {
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
                    )
                )


async def _read_body(request: Request) -> bytes:
    """The body, inflated when ``Content-Encoding`` says gzip/deflate — never beyond the size limit."""
    body = await request.body()
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise BadRequest(f"unsupported Content-Encoding {encoding!r} (use gzip, deflate or none)")
    limit = request.app.state.service.cfg.max_body_bytes
    d = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as e:
        raise BadRequest(f"body is not valid {encoding} data ({e})") from None
    if len(out) > limit:
        raise PayloadTooLarge(f"decompressed body over the {limit // 1024 // 1024} MB limit")
    return out


def create_app(service: InferenceService) -> FastAPI:
    """The REST application for one :class:`InferenceService` (no model loading here: see ``server.py``)."""
    app = FastAPI(
        title="res2net inference server",
        description="Open Inference Protocol v2, simple REST and a PaddleServing-compatible route.",
        docs_url=None,  # Swagger UI would load from a CDN; the schema stays at /openapi.json
        redoc_url=None,
    )
    app.state.service = service
    cfg = service.cfg

    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, e: ServeError):
        if _is_paddle_route(request.url.path):
            return _paddle_error(e.status, e.message, e.headers)
        return _error(e.status, e.message, e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException):
        make = _paddle_error if _is_paddle_route(request.url.path) else _error
        return make(e.status_code, str(e.detail), getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, e: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        return _error(400, f"invalid request: {problems}")

    # ------------------------------------------------------------------------------- OIP: health
    @app.get("/v2/health/live")
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready():
        ok = service.ready and not service.draining
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/v2")
    async def server_metadata():
        return service.server_metadata()

    # ------------------------------------------------------------------------------- OIP: model
    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str = ""):
        service.resolve_model(name, version)
        return service.model_metadata()

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str = ""):
        ok = service.model_ready(name, version)
        return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)

    @app.get("/v2/models/{name}/config")
    @app.get("/v2/models/{name}/versions/{version}/config")
    async def model_config(name: str, version: str = ""):
        service.resolve_model(name, version)
        meta = service.model_metadata()
        return {
            "name": meta["name"],
            "platform": meta["platform"],
            "max_batch_size": cfg.max_batch_size,
            "dynamic_batching": {"max_queue_delay_microseconds": int(cfg.max_delay_ms * 1000)},
            "input": meta["inputs"],
            "output": meta["outputs"],
        }

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, request: Request, version: str = ""):
        service.resolve_model(name, version)
        service.check_accepting()  # refuse before reading a body we would throw away
        body = await _read_body(request)
        req = parse_rest_request(body, request.headers.get(BINARY_HEADER), name, version)
        resp = await service.infer(req)
        content, headers = encode_rest_response(resp)
        return Response(content, headers=headers)

    # ------------------------------------------------------------------------------- simple REST
    @app.post("/v1/classify")
    async def classify(request: Request, top_k: int | None = None):
        """Multipart upload (any number of file fields) or a raw image body -> top-k per image."""
        start = time.perf_counter()
        k = service.top_k_param(top_k)
        service.check_accepting()
        files = await _uploaded_images(request, cfg.max_images_per_request)
        results = await service.classify_images([data for _, data in files], k, "v1")
        items: list[dict[str, Any]] = []
        for (filename, _), r in zip(files, results):
            if isinstance(r, ImageError):
                items.append({"filename": filename, "error": f"{filename or 'image'}: {r}"})
            else:
                items.append(r.as_dict(filename))
        errors = [it["error"] for it in items if "error" in it]
        if len(errors) == len(items):  # nothing classified: the request as a whole is bad
            raise BadRequest(errors[0] if len(errors) == 1 else "; ".join(errors))
        latency_ms = round((time.perf_counter() - start) * 1000, 2)
        return {"model": cfg.model, "top_k": k, "results": items, "latency_ms": latency_ms}

    # ------------------------------------------------------------------------------- PaddleServing
    @app.post("/{model}/prediction")
    async def paddle_prediction(model: str, request: Request):
        """PaddleClas's pipeline route: ``{"key": [...], "value": [<base64 image>, ...]}``.

        Answers as Paddle Serving does (``label``/``prob``: stringified lists of each image's top-1)
        and adds ``results``: the full top-k per image, which Paddle's clients simply ignore.
        """
        if model != PADDLE_IMAGE_OP:
            service.resolve_model(model)
        service.check_accepting()
        try:
            doc = json.loads(await _read_body(request))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BadRequest(f"body is not JSON: {e}") from None
        keys, values = (doc.get("key"), doc.get("value")) if isinstance(doc, dict) else (None, None)
        if not isinstance(keys, list) or not isinstance(values, list) or len(keys) != len(values) or not values:
            raise BadRequest('expected {"key": ["image", ...], "value": ["<base64 image>", ...]} of equal length')
        images = []
        for key, value in zip(keys, values):
            try:
                images.append(base64.b64decode(value, validate=True) if isinstance(value, str) else None)
            except (binascii.Error, ValueError):
                images.append(None)
            if images[-1] is None:
                raise BadRequest(f"value for key {key!r} is not a base64 string")
        results = await service.classify_images(images, cfg.top_k, "paddle")
        for key, r in zip(keys, results):
            if isinstance(r, ImageError):
                raise BadRequest(f"{key}: {r}")
        labels = [r.label_names[0] for r in results]
        probs = [round(r.scores[0], 5) for r in results]  # rounded as Predictor.predict / PaddleClas
        return {
            "err_no": 0,
            "err_msg": "",
            "key": ["label", "prob"],
            "value": [str(labels), str(probs)],
            "tensors": [],
            "results": [r.as_dict(str(key)) for key, r in zip(keys, results)],
        }

    # ------------------------------------------------------------------------------- operations
    @app.get("/metrics")
    async def metrics():
        content, content_type = service.metrics.render()
        return Response(content, media_type=content_type)

    # ------------------------------------------------------------------------------- web demo
    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html", headers={"content-security-policy": DEMO_CSP})

    @app.get("/v1/info", include_in_schema=False)
    async def info():
        return {"model": cfg.model, "top_k": cfg.top_k, "ready": service.ready, "num_classes": service.num_classes}

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(ServerMiddleware, service=service)
    return app


async def _uploaded_images(request: Request, max_files: int) -> list[tuple[str | None, bytes]]:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        async with request.form(max_files=max_files, max_fields=max_files + 16) as form:
            files = [(v.filename, await v.read()) for _, v in form.multi_items() if isinstance(v, UploadFile)]
        if not files:
            raise BadRequest("no file in the multipart form: send the image as a file field, e.g. -F file=@cat.jpg")
        return files
    body = await _read_body(request)
    if not body:
        raise BadRequest("empty body: send an image (raw bytes, or multipart with -F file=@image.jpg)")
    return [(None, body)]
