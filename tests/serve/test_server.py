"""The running server answers every protocol exactly as ``Predictor.predict`` does."""

from __future__ import annotations

import base64
import json
import threading

import httpx
import numpy as np
import pytest

from tests.serve.conftest import MODEL

SCORE_ATOL = 1e-5  # OIP scores are unrounded float32; Predictor rounds to 5 decimals


@pytest.fixture(scope="module")
def expected(predictor, images):
    names = list(images)
    results = predictor.predict([images[n] for n in names])
    assert len({tuple(r["class_ids"]) for r in results}) == len(results), "reference top-5s must differ per image"
    return dict(zip(names, results))


def check_oip(result, names, expected, top_k=5):
    ids, scores, labels = result.as_numpy("class_ids"), result.as_numpy("scores"), result.as_numpy("label_names")
    assert ids.shape == scores.shape == labels.shape == (len(names), top_k)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    for i, name in enumerate(names):
        ref = expected[name]
        assert ids[i].tolist() == ref["class_ids"][:top_k], name
        np.testing.assert_allclose(scores[i], ref["scores"][:top_k], atol=SCORE_ATOL)
        assert [b.decode() if isinstance(b, bytes) else b for b in labels[i]] == ref["label_names"][:top_k]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_tritonclient_encoded_images(server, images, expected, protocol):
    if protocol == "http":
        import tritonclient.http as tc

        client = tc.InferenceServerClient(server.http)
    else:
        import tritonclient.grpc as tc

        client = tc.InferenceServerClient(server.grpc)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
    names = list(images)
    inp = tc.InferInput("image", [len(names)], "BYTES")
    inp.set_data_from_numpy(np.array([images[n] for n in names], dtype=np.object_))
    check_oip(client.infer(MODEL, [inp]), names, expected)
    result = client.infer(MODEL, [inp], parameters={"top_k": 2}, request_id="req-42")
    check_oip(result, names, expected, top_k=2)
    response = result.get_response()
    assert (response["id"] if protocol == "http" else response.id) == "req-42"


@pytest.mark.parametrize("protocol", ["http", "http-json", "grpc"])
def test_tritonclient_fp32_tensor_and_probabilities(server, predictor, images, expected, protocol):
    names = ["chelsea.jpg", "camera.png"]
    x = predictor.preprocess([images[n] for n in names]).numpy()
    binary = protocol != "http-json"
    if protocol.startswith("http"):
        import tritonclient.http as tc

        client = tc.InferenceServerClient(server.http)
        inp = tc.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        outputs = [tc.InferRequestedOutput(n, binary_data=binary) for n in ("class_ids", "scores", "label_names")]
        outputs.append(tc.InferRequestedOutput("probabilities", binary_data=binary))
    else:
        import tritonclient.grpc as tc

        client = tc.InferenceServerClient(server.grpc)
        inp = tc.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        outputs = [tc.InferRequestedOutput(n) for n in ("class_ids", "scores", "label_names", "probabilities")]
    result = client.infer(MODEL, [inp], outputs=outputs)
    check_oip(result, names, expected)
    logits = predictor.forward(x)
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(result.as_numpy("probabilities"), z / z.sum(axis=1, keepdims=True), atol=1e-6)


def test_triton_classification_extension(server, images, expected):
    import tritonclient.http as tc

    client = tc.InferenceServerClient(server.http)
    inp = tc.InferInput("image", [1], "BYTES")
    inp.set_data_from_numpy(np.array([images["coffee.jpg"]], dtype=np.object_))
    out = client.infer(MODEL, [inp], outputs=[tc.InferRequestedOutput("probabilities", class_count=3)])
    entries = [e.decode().split(":", 2) for e in out.as_numpy("probabilities")[0]]
    ref = expected["coffee.jpg"]
    assert [int(i) for _, i, _ in entries] == ref["class_ids"][:3]
    assert [label for _, _, label in entries] == ref["label_names"][:3]


def test_plain_json_infer_with_base64_images(server, images, expected):
    body = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [1],
                "data": [base64.b64encode(images["astronaut.png"]).decode()],
            }
        ]
    }
    r = httpx.post(server.url(f"/v2/models/{MODEL}/infer"), json=body, timeout=60)
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert out["class_ids"]["data"] == expected["astronaut.png"]["class_ids"]
    assert out["label_names"]["data"] == expected["astronaut.png"]["label_names"]


def test_metadata_and_health(server):
    import tritonclient.grpc as tg
    import tritonclient.http as th

    meta = th.InferenceServerClient(server.http).get_model_metadata(MODEL)
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {"image": "BYTES", "input": "FP32"}
    assert [i["shape"] for i in meta["inputs"] if i["name"] == "input"] == [[-1, 3, 224, 224]]
    assert {o["name"] for o in meta["outputs"]} == {"class_ids", "scores", "label_names", "probabilities"}
    gmeta = tg.InferenceServerClient(server.grpc).get_model_metadata(MODEL)
    assert [t.name for t in gmeta.inputs] == ["image", "input"] and gmeta.versions == ["1"]
    assert th.InferenceServerClient(server.http).get_server_metadata()["name"] == "res2net"
    assert httpx.get(server.url("/v2/health/live")).json() == {"live": True}
    assert httpx.get(server.url(f"/v2/models/{MODEL}/versions/1/ready")).status_code == 200
    assert httpx.get(server.url("/v2/models/Res2Net_tiny/ready")).status_code == 404  # names are exact


def test_v1_classify_multipart_and_raw(server, images, expected):
    names = ["chelsea.jpg", "coffee.jpg"]
    files = [("file", (n, images[n], "image/jpeg")) for n in names]
    r = httpx.post(server.url("/v1/classify"), files=files, timeout=60)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["model"] == MODEL and doc["latency_ms"] > 0
    for n, result in zip(names, doc["results"]):
        assert result == {**expected[n], "filename": n}  # exactly Predictor.predict's dict

    r = httpx.post(
        server.url("/v1/classify?top_k=3"), content=images["camera.png"], headers={"content-type": "image/png"}
    )
    assert r.status_code == 200, r.text
    (result,) = r.json()["results"]
    ref = expected["camera.png"]
    assert result["class_ids"] == ref["class_ids"][:3] and result["scores"] == ref["scores"][:3]


def test_paddleserving_route(server, images, expected):
    """PaddleClas's own client payload, on its own URL and on the model's name."""
    payload = {"key": ["image"], "value": [base64.b64encode(images["chelsea.jpg"]).decode()]}
    ref = expected["chelsea.jpg"]
    for route in ("/imagenet/prediction", f"/{MODEL}/prediction"):
        r = httpx.post(server.url(route), content=json.dumps(payload), timeout=60)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["err_no"] == 0 and doc["err_msg"] == "" and doc["key"] == ["label", "prob"]
        assert doc["value"] == [str([ref["label_names"][0]]), str([ref["scores"][0]])]
        assert doc["results"][0]["class_ids"] == ref["class_ids"]

    two = {
        "key": ["image_0", "image_1"],
        "value": [payload["value"][0], base64.b64encode(images["coffee.jpg"]).decode()],
    }
    doc = httpx.post(server.url("/imagenet/prediction"), json=two, timeout=60).json()
    assert doc["value"][0] == str([ref["label_names"][0], expected["coffee.jpg"]["label_names"][0]])


def test_concurrent_requests_are_batched_and_correct(server, images, expected):
    before_batches = server.metric("res2net_batch_size_count")
    before_images = server.metric("res2net_batch_size_sum")
    names = list(images) * 3
    results: dict[int, dict] = {}

    def one(i: int) -> None:
        r = httpx.post(server.url("/v1/classify"), content=images[names[i]], timeout=120)
        results[i] = r.json() if r.status_code == 200 else {"status": r.status_code, "body": r.text}

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(names))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, name in enumerate(names):
        assert results[i]["results"][0]["class_ids"] == expected[name]["class_ids"], results[i]
    batches = server.metric("res2net_batch_size_count") - before_batches
    batched_images = server.metric("res2net_batch_size_sum") - before_images
    assert batched_images == len(names)
    assert batches < len(names), f"{len(names)} concurrent requests ran as {batches} forwards: no batching"


def test_metrics_exposition(server, images):
    httpx.post(server.url("/v1/classify"), content=images["chelsea.jpg"], timeout=60)
    text = httpx.get(server.url("/metrics")).text
    for name in (
        "res2net_requests_total",
        "res2net_request_duration_seconds_bucket",
        "res2net_batch_size_bucket",
        "res2net_queue_depth",
        "res2net_admitted_images",
        "res2net_model_load_seconds",
        "res2net_model_warmup_seconds",
    ):
        assert name in text, name
    assert server.metric("res2net_requests_total", route="/v1/classify", status="200") >= 1
    assert server.metric("res2net_model_load_seconds") > 0
    assert server.metric("res2net_ready") == 1


def test_access_log_lines_are_json(server):
    httpx.get(server.url("/v2/health/live"), headers={"x-request-id": "trace-me-123"})
    lines = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    mine = [entry for entry in lines if entry.get("request_id") == "trace-me-123"]
    assert mine and mine[0]["path"] == "/v2/health/live" and mine[0]["status"] == 200
    assert {"ts", "method", "route", "latency_ms", "bytes_in", "bytes_out", "client"} <= set(mine[0])
    assert any(entry.get("proto") == "grpc" for entry in lines)


def test_demo_page_loads_nothing_from_elsewhere(server):
    page = httpx.get(server.url("/"))
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/", "/static/app.js", "/static/style.css"):
        text = httpx.get(server.url(asset)).text
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, asset
