"""The REST side: OIP v2 routes, ``/v1/classify``, the PaddleServing route, metrics and the web demo.

Error bodies: ``{"error": "<what is wrong>"}`` (OIP and ``/v1``), or PaddleServing's envelope on
its route. :class:`~res2net.serve.middleware.ServerMiddleware` in front of everything enforces the
body's size limit and deadline, tags each request with an id, records metrics by route template and
writes one JSON access-log line per request; ``/openapi.json`` documents exactly what the routes answer
(:mod:`res2net.serve.openapi`).
"""

from __future__ import annotations

import time
import zlib
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from res2net.data.image import ImageError
from res2net.serve.errors import BadRequest, PayloadTooLarge, ServeError
from res2net.serve.middleware import ServerMiddleware, error_response, is_paddle_route, paddle_error_response
from res2net.serve.oip import BINARY_HEADER, encode_rest_response, parse_rest_request
from res2net.serve.openapi import install_openapi
from res2net.serve.paddle import ROUTE_OP, paddle_response, parse_paddle_request
from res2net.serve.service import InferenceService

STATIC_DIR = Path(__file__).with_name("static")
# The demo page loads nothing from elsewhere; say so to the browser too.
DEMO_CSP = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; connect-src 'self'"


def create_app(service: InferenceService) -> FastAPI:
    """The REST application for one :class:`InferenceService` (no model loading here: see ``server.py``)."""
    app = FastAPI(
        title="res2net inference server",
        description="Open Inference Protocol v2, simple REST and a PaddleServing-compatible route.",
        docs_url=None,  # Swagger UI would load from a CDN; the schema stays at /openapi.json
        redoc_url=None,
    )
    app.state.service = service
    _add_error_handlers(app)
    _add_health_routes(app, service)
    _add_model_routes(app, service)
    _add_classify_routes(app, service)
    _add_operations_routes(app, service)
    install_openapi(app)
    app.add_middleware(ServerMiddleware, service=service)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, e: ServeError):
        make = paddle_error_response if is_paddle_route(request.url.path) else error_response
        return make(e.status, e.message, e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException):
        make = paddle_error_response if is_paddle_route(request.url.path) else error_response
        return make(e.status_code, str(e.detail), getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, e: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        return error_response(400, f"invalid request: {problems}")


def _add_health_routes(app: FastAPI, service: InferenceService) -> None:
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


def _add_model_routes(app: FastAPI, service: InferenceService) -> None:
    cfg = service.cfg

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
        req = await service.parse(parse_rest_request, body, request.headers.get(BINARY_HEADER), name, version)
        content, headers = encode_rest_response(await service.infer(req))
        return Response(content, headers=headers)


def _add_classify_routes(app: FastAPI, service: InferenceService) -> None:
    cfg = service.cfg

    @app.post("/v1/classify")
    async def classify(request: Request, top_k: str | None = None):
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

    @app.post("/{model}/prediction")
    async def paddle_prediction(model: str, request: Request):
        """PaddleClas's pipeline route (:mod:`res2net.serve.paddle`)."""
        if model != ROUTE_OP:
            service.resolve_model(model)
        service.check_accepting()
        keys, images = await service.parse(parse_paddle_request, await _read_body(request))
        results = await service.classify_images(images, cfg.top_k, "paddle")
        for key, r in zip(keys, results):
            if isinstance(r, ImageError):
                raise BadRequest(f"{key[:60]}: {r}")
        return paddle_response(keys, results)


def _add_operations_routes(app: FastAPI, service: InferenceService) -> None:
    cfg = service.cfg

    @app.get("/metrics")
    async def metrics():
        content, content_type = service.metrics.render()
        return Response(content, media_type=content_type)

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html", headers={"content-security-policy": DEMO_CSP})

    @app.get("/v1/info", include_in_schema=False)
    async def info():
        return {"model": cfg.model, "top_k": cfg.top_k, "ready": service.ready, "num_classes": service.num_classes}

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


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
