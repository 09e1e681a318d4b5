"""Bad input gets the right 4xx naming the problem, never a 500, and the server stays healthy."""

from __future__ import annotations

import base64
import json
import struct
import zlib

import httpx
import numpy as np
import pytest

from tests.serve.conftest import MODEL


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header announcing ``width x height`` pixels, with almost no data: the cheap half of a
    decompression bomb. The server must refuse it from the header, before allocating anything."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bad_images(images) -> dict[str, tuple[bytes, str]]:
    """name -> (payload, words the error must contain)."""
    jpeg = images["chelsea.jpg"]
    return {
        "empty": (b"", "empty"),
        "truncated": (jpeg[: len(jpeg) // 3], "truncated"),
        "corrupt": (jpeg[:200] + bytes(range(256)) * 8 + jpeg[2248:], "corrupt"),
        "text": (b"this is a text file, not a picture\n" * 20, "not an image"),
        "huge": (png_claiming(60_000, 60_000), "refusing oversized image"),  # Pillow's own bomb guard
        "big": (png_claiming(8_000, 8_000), "refusing 8000x8000 image (64 Mpx > 40 Mpx limit)"),  # --max-pixels
    }


@pytest.fixture(autouse=True)
def still_healthy(server):
    yield
    server.assert_healthy()


CASES = ["empty", "truncated", "corrupt", "text", "huge", "big"]


@pytest.mark.parametrize("case", CASES)
def test_v1_classify_bad_image(server, bad_images, case):
    payload, words = bad_images[case]
    r = httpx.post(server.url("/v1/classify"), files={"file": (f"{case}.jpg", payload)}, timeout=60)
    assert r.status_code == 400, r.text
    assert words in r.json()["error"] and f"{case}.jpg" in r.json()["error"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_oip_bad_image(server, bad_images, case, protocol):
    from tritonclient.utils import InferenceServerException

    if protocol == "http":
        import tritonclient.http as tc

        client = tc.InferenceServerClient(server.http)
    else:
        import tritonclient.grpc as tc

        client = tc.InferenceServerClient(server.grpc)
    payload, words = bad_images[case]
    inp = tc.InferInput("image", [1], "BYTES")
    inp.set_data_from_numpy(np.array([payload], dtype=np.object_))
    with pytest.raises(InferenceServerException) as e:
        client.infer(MODEL, [inp])
    assert str(e.value.status()) in ("400", "StatusCode.INVALID_ARGUMENT")
    assert "element 0" in e.value.message() and words in e.value.message()


def test_paddle_route_bad_image(server, bad_images):
    payload, words = bad_images["text"]
    r = httpx.post(
        server.url("/imagenet/prediction"), json={"key": ["image"], "value": [base64.b64encode(payload).decode()]}
    )
    assert r.status_code == 400
    doc = r.json()
    assert doc["err_no"] == 400 and words in doc["err_msg"] and doc["value"] == []
    r = httpx.post(server.url("/imagenet/prediction"), json={"key": ["image"], "value": ["%%% not base64"]})
    assert r.status_code == 400 and "base64" in r.json()["err_msg"]
    r = httpx.post(server.url("/imagenet/prediction"), content=b"{broken")
    assert r.status_code == 400 and "not valid JSON" in r.json()["err_msg"]


def test_one_bad_image_never_fails_the_others(server, images, bad_images, predictor):
    """In one request (per-file errors) and across requests batched together."""
    bad, _ = bad_images["truncated"]
    files = [("file", ("good.jpg", images["coffee.jpg"])), ("file", ("bad.jpg", bad))]
    r = httpx.post(server.url("/v1/classify"), files=files, timeout=60)
    assert r.status_code == 200, r.text
    good_result, bad_result = r.json()["results"]
    assert good_result["class_ids"] == predictor.predict([images["coffee.jpg"]])[0]["class_ids"]
    assert "truncated" in bad_result["error"] and "bad.jpg" in bad_result["error"]

    # OIP requests are atomic: the error names the element; other requests in flight are untouched.
    import concurrent.futures

    import tritonclient.http as tc

    def infer(payload):
        client = tc.InferenceServerClient(server.http)
        inp = tc.InferInput("image", [1], "BYTES")
        inp.set_data_from_numpy(np.array([payload], dtype=np.object_))
        try:
            return client.infer(MODEL, [inp]).as_numpy("class_ids")[0].tolist()
        except Exception as e:  # noqa: BLE001
            return e

    payloads = [images["chelsea.jpg"], bad, images["chelsea.jpg"], bad_images["huge"][0], images["chelsea.jpg"]]
    with concurrent.futures.ThreadPoolExecutor(len(payloads)) as pool:
        outs = list(pool.map(infer, payloads))
    ref = predictor.predict([images["chelsea.jpg"]])[0]["class_ids"]
    assert outs[0] == outs[2] == outs[4] == ref
    assert all(isinstance(o, Exception) for o in (outs[1], outs[3]))

    inp = tc.InferInput("image", [2], "BYTES")
    inp.set_data_from_numpy(np.array([images["chelsea.jpg"], bad], dtype=np.object_))
    with pytest.raises(Exception, match="element 1"):
        tc.InferenceServerClient(server.http).infer(MODEL, [inp])


def test_oversized_body_is_413(server):
    big = b"\0" * (8 * 1024 * 1024 + 1)
    r = httpx.post(server.url("/v1/classify"), content=big, timeout=60)
    assert r.status_code == 413 and "limit" in r.json()["error"]

    def chunks():  # no Content-Length: the limit must hold while streaming too
        for _ in range(9):
            yield b"\0" * (1024 * 1024)

    r = httpx.post(server.url(f"/v2/models/{MODEL}/infer"), content=chunks(), timeout=60)
    assert r.status_code == 413, r.text
    r = httpx.post(server.url("/imagenet/prediction"), content=big, timeout=60)
    assert r.status_code == 413 and r.json()["err_no"] == 413

    import tritonclient.grpc as tg
    from tritonclient.utils import InferenceServerException

    inp = tg.InferInput("image", [1], "BYTES")
    inp.set_data_from_numpy(np.array([big], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="RESOURCE_EXHAUSTED"):
        tg.InferenceServerClient(server.grpc).infer(MODEL, [inp])


def test_gzip_bomb_is_413(server):
    bomb = zlib.compress(b"\0" * (64 * 1024 * 1024), 9)  # 64 MB inflated, ~64 KB on the wire
    r = httpx.post(
        server.url(f"/v2/models/{MODEL}/infer"), content=bomb, headers={"content-encoding": "deflate"}, timeout=60
    )
    assert r.status_code == 413 and "decompressed" in r.json()["error"]


@pytest.mark.parametrize(
    "name, datatype, shape, message",
    [
        ("input", "FP32", [1, 3, 100, 100], "expected shape [N, 3, 224, 224]"),
        ("input", "FP32", [3, 224, 224], "expected shape"),
        ("input", "FP64", [1, 3, 224, 224], "must be FP32"),
        ("input", "INT32", [1, 3, 224, 224], "must be FP32"),
        ("image", "FP32", [1, 3, 224, 224], "must be BYTES"),
        ("pixels", "FP32", [1, 3, 224, 224], "unknown input 'pixels'"),
    ],
)
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_wrong_tensor_shape_dtype_or_name(server, name, datatype, shape, message, protocol):
    from tritonclient.utils import InferenceServerException, triton_to_np_dtype

    tc = __import__(f"tritonclient.{protocol}", fromlist=["x"])
    client = tc.InferenceServerClient(server.http if protocol == "http" else server.grpc)
    inp = tc.InferInput(name, shape, datatype)
    inp.set_data_from_numpy(np.zeros(shape, dtype=triton_to_np_dtype(datatype)))
    with pytest.raises(InferenceServerException) as e:
        client.infer(MODEL, [inp])
    assert message in e.value.message()
    assert str(e.value.status()) in ("400", "StatusCode.INVALID_ARGUMENT")


def test_non_finite_tensor_and_bad_parameters(server):
    import tritonclient.http as tc
    from tritonclient.utils import InferenceServerException

    client = tc.InferenceServerClient(server.http)
    x = np.zeros((1, 3, 224, 224), np.float32)
    x[0, 0, 0, 0] = np.nan
    inp = tc.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException, match="NaN"):
        client.infer(MODEL, [inp])
    inp.set_data_from_numpy(np.zeros_like(x))
    for params, message in (({"top_k": 0}, "top_k"), ({"top_k": 5000}, "top_k"), ({"top_k": "x"}, "top_k")):
        with pytest.raises(InferenceServerException, match=message):
            client.infer(MODEL, [inp], parameters=params)
    with pytest.raises(InferenceServerException, match="unknown output 'logits'"):
        client.infer(MODEL, [inp], outputs=[tc.InferRequestedOutput("logits")])
    r = httpx.post(server.url("/v1/classify?top_k=abc"), content=b"x")
    assert r.status_code == 400 and "top_k" in r.json()["error"]


def test_unknown_model_is_404(server, images):
    import tritonclient.grpc as tg
    import tritonclient.http as th
    from tritonclient.utils import InferenceServerException

    for tc, url in ((th, server.http), (tg, server.grpc)):
        client = tc.InferenceServerClient(url)
        inp = tc.InferInput("image", [1], "BYTES")
        inp.set_data_from_numpy(np.array([images["chelsea.jpg"]], dtype=np.object_))
        with pytest.raises(InferenceServerException) as e:
            client.infer("resnet50", [inp])
        assert str(e.value.status()) in ("404", "StatusCode.NOT_FOUND") and "resnet50" in e.value.message()
        with pytest.raises(InferenceServerException):
            client.get_model_metadata("resnet50")
        with pytest.raises(InferenceServerException):
            client.infer(MODEL, [inp], model_version="7")
    assert httpx.get(server.url("/v2/models/resnet50/ready")).status_code == 404
    r = httpx.post(server.url("/resnet50/prediction"), json={"key": ["image"], "value": ["AAAA"]})
    assert r.status_code == 404 and r.json()["err_no"] == 404


@pytest.mark.parametrize(
    "body, headers, message",
    [
        (b"{", {}, "not valid JSON"),
        (json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["@@@"]}]}), {}, "base64"),
        (b'{"inputs": []}', {}, "non-empty 'inputs'"),
        (b"{}", {"content-encoding": "br"}, "Content-Encoding"),
        (b"not gzip", {"content-encoding": "gzip"}, "not valid gzip"),
    ],
)
def test_malformed_oip_requests(server, body, headers, message):
    r = httpx.post(server.url(f"/v2/models/{MODEL}/infer"), content=body, headers=headers)
    assert r.status_code == 400 and message in r.json()["error"], r.text


def test_no_file_in_multipart(server):
    r = httpx.post(server.url("/v1/classify"), data={"note": "no file here"}, files={"x": ("", b"")})
    assert r.status_code == 400
