"""``/openapi.json`` as the server behaves: every status a route answers, every body it takes and returns.

FastAPI's generated document would claim ``422`` for bad parameters (this server answers ``400``, as
the Open Inference Protocol says), leave out the ``404``/``408``/``413``/``503``/``504`` answers, the
request bodies the routes read themselves and the ``/metrics`` content type. So the routes' own
documentation is replaced by the tables below; ``tests/serve/test_openapi.py`` runs schemathesis
against the running server to hold the document to the behaviour.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import CONTENT_TYPE_LATEST

_JSON = "application/json"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _array(items: dict) -> dict:
    return {"type": "array", "items": items}


def _object(required: list[str], **properties: dict) -> dict:
    return {"type": "object", "required": required, "properties": properties}


_STR, _INT, _NUM, _BOOL = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}
_TENSOR_META = _object(["name", "datatype", "shape"], name=_STR, datatype=_STR, shape=_array(_INT))
_TOP_K = _object(
    ["class_ids", "scores", "label_names", "filename"],
    class_ids=_array(_INT),
    scores=_array(_NUM),
    label_names=_array(_STR),
    filename={"type": ["string", "null"]},
)
SCHEMAS: dict[str, dict] = {
    "Error": _object(["error"], error=_STR),
    "PaddleError": _object(
        ["err_no", "err_msg"], err_no=_INT, err_msg=_STR, key=_array({}), value=_array({}), tensors=_array({})
    ),
    "Live": _object(["live"], live=_BOOL),
    "Ready": _object(["ready"], ready=_BOOL),
    "ModelReady": _object(["name", "ready"], name=_STR, ready=_BOOL),
    "ServerMetadata": _object(["name", "version", "extensions"], name=_STR, version=_STR, extensions=_array(_STR)),
    "ModelMetadata": _object(
        ["name", "versions", "platform", "inputs", "outputs"],
        name=_STR,
        versions=_array(_STR),
        platform=_STR,
        inputs=_array(_TENSOR_META),
        outputs=_array(_TENSOR_META),
    ),
    "ModelConfig": _object(
        ["name", "platform", "max_batch_size", "input", "output"],
        name=_STR,
        platform=_STR,
        max_batch_size=_INT,
        dynamic_batching=_object(["max_queue_delay_microseconds"], max_queue_delay_microseconds=_INT),
        input=_array(_TENSOR_META),
        output=_array(_TENSOR_META),
    ),
    "InferRequest": {
        **_object(
            ["inputs"],
            id=_STR,
            parameters={"type": "object"},
            inputs={
                **_array(
                    _object(
                        ["name", "shape", "datatype"],
                        name=_STR,
                        shape=_array(_INT),
                        datatype=_STR,
                        parameters={"type": "object"},
                        data={"description": "row-major values, flat or nested; BYTES: base64 strings"},
                    )
                ),
                "minItems": 1,
            },
            outputs=_array(_object(["name"], name=_STR, parameters={"type": "object"})),
        ),
        "description": "Open Inference Protocol v2 request (inputs 'image' BYTES [N] or 'input' FP32 [N, 3, H, W]).",
    },
    "InferResponse": _object(
        ["model_name", "outputs"],
        model_name=_STR,
        model_version=_STR,
        id=_STR,
        parameters={"type": "object"},
        outputs=_array(
            _object(
                ["name", "datatype", "shape"],
                name=_STR,
                datatype=_STR,
                shape=_array(_INT),
                parameters={"type": "object"},
                data=_array({}),
            )
        ),
    ),
    "ClassifyResponse": _object(
        ["model", "top_k", "results", "latency_ms"],
        model=_STR,
        top_k=_INT,
        latency_ms=_NUM,
        results=_array(
            {"oneOf": [_TOP_K, _object(["filename", "error"], filename={"type": ["string", "null"]}, error=_STR)]}
        ),
    ),
    "PaddleRequest": _object(["key", "value"], key=_array(_STR), value=_array({**_STR, "format": "byte"})),
    "PaddleResponse": _object(
        ["err_no", "err_msg", "key", "value", "tensors"],
        err_no=_INT,
        err_msg=_STR,
        key=_array(_STR),
        value=_array(_STR),
        tensors=_array({}),
        results=_array(_TOP_K),
    ),
}

_WHY = {
    400: "malformed request: bad JSON, tensor, parameter or image (the message says which)",
    404: "unknown model or version",
    408: "request body not received within --body-timeout; the connection is closed",
    413: "body (or its decompressed form, or its image count) over --max-body-mb / --max-queue",
    503: "model loading, server draining or at capacity: retry after Retry-After seconds",
    504: "not finished within --timeout (or the request's own timeout parameter)",
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": _INT}}


def _ok(schema: str | None = None, description: str = "OK", content: dict | None = None) -> dict:
    return {"description": description, "content": content or {_JSON: {"schema": _ref(schema)}}}


def _errors(*statuses: int, paddle: bool = False) -> dict:
    out = {}
    for s in statuses:
        out[str(s)] = {
            "description": _WHY[s],
            "content": {_JSON: {"schema": _ref("PaddleError" if paddle else "Error")}},
        }
        if s == 503:
            out[str(s)]["headers"] = _RETRY_AFTER
    return out


_INFER_ERRORS = (400, 404, 408, 413, 503, 504)
_OCTETS = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
# (path without "/versions/{version}", method) -> responses
RESPONSES: dict[tuple[str, str], dict] = {
    ("/v2/health/live", "get"): {"200": _ok("Live")},
    ("/v2/health/ready", "get"): {"200": _ok("Ready"), "503": _ok("Ready", "not ready: loading or draining")},
    ("/v2", "get"): {"200": _ok("ServerMetadata")},
    ("/v2/models/{name}", "get"): {"200": _ok("ModelMetadata"), **_errors(404)},
    ("/v2/models/{name}/ready", "get"): {
        "200": _ok("ModelReady"),
        "503": _ok("ModelReady", "not ready"),
        **_errors(404),
    },
    ("/v2/models/{name}/config", "get"): {"200": _ok("ModelConfig"), **_errors(404)},
    ("/v2/models/{name}/infer", "post"): {
        "200": _ok(
            description="the response; binary outputs follow the JSON header (Inference-Header-Content-Length)",
            content={_JSON: {"schema": _ref("InferResponse")}, **_OCTETS},
        ),
        **_errors(*_INFER_ERRORS),
    },
    ("/v1/classify", "post"): {"200": _ok("ClassifyResponse"), **_errors(400, 408, 413, 503, 504)},
    ("/{model}/prediction", "post"): {"200": _ok("PaddleResponse"), **_errors(*_INFER_ERRORS, paddle=True)},
    ("/metrics", "get"): {
        "200": _ok(
            description="Prometheus text exposition", content={CONTENT_TYPE_LATEST.split(";")[0]: {"schema": _STR}}
        )
    },
}
BODIES: dict[tuple[str, str], dict] = {
    ("/v2/models/{name}/infer", "post"): {
        "required": True,
        "content": {
            _JSON: {"schema": _ref("InferRequest")},
            # the binary tensor data extension: JSON header, then raw tensors
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    ("/v1/classify", "post"): {
        "required": True,
        "description": "one or more image files as multipart fields, or one raw encoded image",
        "content": {
            "multipart/form-data": {
                "schema": _object(["file"], file=_array({"type": "string", "format": "binary"})),
            },
            **_OCTETS,
        },
    },
    ("/{model}/prediction", "post"): {"required": True, "content": {_JSON: {"schema": _ref("PaddleRequest")}}},
}
_EXTRA_PARAMETERS: dict[tuple[str, str], list[dict]] = {
    ("/v2/models/{name}/infer", "post"): [
        {
            "name": "Inference-Header-Content-Length",
            "in": "header",
            "required": False,
            "description": "binary tensor data extension: length of the JSON header at the start of the body",
            "schema": {"type": "integer", "minimum": 0},
        }
    ],
}


def document(doc: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's generated document -> the one that matches the server's behaviour."""
    for path, operations in doc["paths"].items():
        key_path = path.replace("/versions/{version}", "")
        for method, op in operations.items():
            key = (key_path, method)
            op["responses"] = RESPONSES[key]
            if key in BODIES:
                op["requestBody"] = BODIES[key]
            params = [p for p in op.get("parameters", []) if not (p["in"] == "query" and p["name"] == "version")]
            for p in params:
                if p["name"] == "top_k":  # read as text and validated by the route: any bad value is a 400
                    p["schema"] = {"type": "integer", "minimum": 1}
            op["parameters"] = params + _EXTRA_PARAMETERS.get(key, [])
    doc["components"] = {"schemas": SCHEMAS}
    return doc


def install_openapi(app: FastAPI) -> None:
    """Serve :func:`document` of the app's routes at ``/openapi.json``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            generated = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            app.openapi_schema = document(generated)
        return app.openapi_schema

    app.openapi = openapi
