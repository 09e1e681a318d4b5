"""Far past capacity the server sheds load with 503 / RESOURCE_EXHAUSTED, stays up, and its memory stays bounded."""

from __future__ import annotations

import concurrent.futures
import threading

import httpx
import numpy as np
import pytest

from tests.serve.conftest import MODEL, run_server


@pytest.fixture(scope="module")
def small_server(tiny_weights, tmp_path_factory):
    """Capacity: 4 images admitted at once."""
    args = ("--max-queue", "4", "--max-batch-size", "2", "--max-delay-ms", "5", "--no-access-log")
    with run_server(tmp_path_factory.mktemp("overload"), *args, weights=tiny_weights) as s:
        yield s


def test_http_overload_only_503s_and_bounded_memory(small_server, images):
    server = small_server
    payload = images["astronaut.png"]  # 512x512 PNG: real decoding work per request
    rss_before = server.rss_mb()
    statuses: list[int] = []
    retry_after: list[str | None] = []
    lock = threading.Lock()

    def client(_):
        with httpx.Client(timeout=120) as c:
            for _ in range(3):
                r = c.post(server.url("/v1/classify"), content=payload)
                with lock:
                    statuses.append(r.status_code)
                    if r.status_code == 503:
                        retry_after.append(r.headers.get("retry-after"))

    with concurrent.futures.ThreadPoolExecutor(32) as pool:  # 8x the capacity
        list(pool.map(client, range(32)))
    rss_after = server.rss_mb()
    counts = {s: statuses.count(s) for s in set(statuses)}
    assert set(counts) <= {200, 503}, counts
    assert counts.get(200, 0) > 0 and counts.get(503, 0) > 0, counts
    assert all(v == "1" for v in retry_after)
    assert rss_after - rss_before < 300, f"RSS grew {rss_before:.0f} -> {rss_after:.0f} MB"
    assert server.metric("res2net_admitted_images") == 0
    assert server.metric("res2net_rejected_total", reason="queue_full") >= counts[503]
    server.assert_healthy()


def test_grpc_overload_is_resource_exhausted(small_server, images):
    import tritonclient.grpc as tg
    from tritonclient.utils import InferenceServerException

    def one(_):
        client = tg.InferenceServerClient(small_server.grpc)
        inp = tg.InferInput("image", [1], "BYTES")
        inp.set_data_from_numpy(np.array([images["astronaut.png"]], dtype=np.object_))
        try:
            client.infer(MODEL, [inp])
            return "OK"
        except InferenceServerException as e:
            return str(e.status())
        finally:
            client.close()

    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        outcomes = list(pool.map(one, range(48)))
    assert set(outcomes) <= {"OK", "StatusCode.RESOURCE_EXHAUSTED"}, set(outcomes)
    assert "OK" in outcomes and "StatusCode.RESOURCE_EXHAUSTED" in outcomes
    small_server.assert_healthy()
