"""``/openapi.json`` matches what the server does (issue 11, item 13), checked two ways:

* by hand: ``400`` (never FastAPI's ``422``) and the ``404``/``408``/``413``/``503``/``504`` answers are
  documented, ``/metrics`` says its content type, ``/v1/classify`` and ``/infer`` say their bodies;
* by schemathesis, against the running server: generated requests for every operation (bounded:
  :data:`EXAMPLES` each) never get a 5xx, and every answer's status, content type, headers and body
  conform to the document.
"""

from __future__ import annotations

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fuzzing import fuzz_examples, long_run

EXAMPLES = max(1, fuzz_examples() // 20)  # 10 per operation by default; RES2NET_FUZZ_EXAMPLES raises it
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def test_document_says_what_the_routes_answer(server):
    doc = httpx.get(server.url("/openapi.json"), timeout=30).json()
    ops = {(path, method): op for path, item in doc["paths"].items() for method, op in item.items()}
    assert all("422" not in op["responses"] for op in ops.values())
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    infer = ops[("/v2/models/{name}/infer", "post")]
    assert {"200", "400", "404", "408", "413", "503", "504"} <= set(infer["responses"])
    assert set(infer["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
    classify = ops[("/v1/classify", "post")]
    assert "multipart/form-data" in classify["requestBody"]["content"] and "413" in classify["responses"]
    assert "503" in ops[("/v2/health/ready", "get")]["responses"]
    assert "404" in ops[("/v2/models/{name}/ready", "get")]["responses"]
    assert list(ops[("/metrics", "get")]["responses"]["200"]["content"]) == ["text/plain"]
    r = httpx.get(server.url("/metrics"), timeout=30)
    assert r.headers["content-type"].split(";")[0] == "text/plain"
    # a bad query parameter is the documented 400, not FastAPI's 422
    assert httpx.post(server.url("/v1/classify?top_k=lots"), content=b"x", timeout=30).status_code == 400


def test_schemathesis_no_5xx_and_responses_conform(server):
    """Every operation, :data:`EXAMPLES` generated requests each (schemathesis's Python API: its pytest
    plugin's lazy loading does not run under pytest 9)."""
    schema = schemathesis.openapi.from_url(server.url("/openapi.json"))
    failures, operations = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=not long_run(),
            suppress_health_check=list(HealthCheck),
        )
        def run(case):
            case.call_and_validate(checks=CHECKS, timeout=60)

        try:
            run()
        except Exception as e:  # noqa: BLE001 - collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {str(e)[:2000]}")
    assert operations >= 14
    assert not failures, "\n\n".join(failures)
    server.assert_healthy()
