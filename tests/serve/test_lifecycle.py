"""Readiness, draining, timeouts and backpressure, in-process with a stand-in model (fast, deterministic)."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import numpy as np

from res2net.data.image import load_image
from res2net.predict.postprocess import softmax
from res2net.serve.app import create_app
from res2net.serve.config import ServeConfig
from res2net.serve.service import InferenceService


class StandInModel:
    """The ServedModel interface with a trivial network, an adjustable speed and a warm-up gate."""

    name = "res2net_tiny"
    engine = "stand-in"
    num_classes = 10
    labels = [f"class {i}" for i in range(10)]
    input_shape = (3, 224, 224)
    load_seconds = 0.01
    warmup_seconds = 0.0

    def __init__(self, infer_seconds: float = 0.0, gate: threading.Event | None = None):
        self.infer_seconds = infer_seconds
        self.gate = gate

    def decode(self, data: bytes) -> np.ndarray:
        return np.full(self.input_shape, load_image(data).mean() / 255, np.float32)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(self.infer_seconds)
        return softmax(batch.mean(axis=(1, 2, 3))[:, None] * np.arange(10))

    def warmup(self, sizes) -> float:
        if self.gate is not None:
            assert self.gate.wait(30)
        return 0.0


def serve(cfg: ServeConfig, model: StandInModel, scenario) -> None:
    """Run ``scenario(client, service, load_task)`` against the app on one event loop."""

    async def main():
        service = InferenceService(cfg)
        app = create_app(service)
        load = asyncio.ensure_future(service.load(model))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
            try:
                await scenario(client, service, load)
            finally:
                await load
                await service.close()

    asyncio.run(main())


def test_ready_only_after_load_and_warmup(images):
    gate = threading.Event()

    async def scenario(client, service, load):
        assert (await client.get("/v2/health/live")).status_code == 200
        assert (await client.get("/v2/health/ready")).status_code == 503
        assert (await client.get("/v2/models/res2net_tiny/ready")).status_code == 503
        r = await client.post("/v1/classify", content=images["chelsea.jpg"])
        assert r.status_code == 503 and "loading" in r.json()["error"] and r.headers["retry-after"]
        gate.set()
        await load
        assert (await client.get("/v2/health/ready")).status_code == 200
        r = await client.post("/v1/classify", content=images["chelsea.jpg"])
        assert r.status_code == 200 and r.json()["results"][0]["label_names"][0].startswith("class ")

    serve(ServeConfig(model="res2net_tiny"), StandInModel(gate=gate), scenario)


def test_draining_refuses_new_work_but_stays_live(images):
    async def scenario(client, service, load):
        await load
        service.start_draining()
        assert (await client.get("/v2/health/live")).status_code == 200
        assert (await client.get("/v2/health/ready")).status_code == 503
        r = await client.post("/v1/classify", content=images["chelsea.jpg"])
        assert r.status_code == 503 and "shutting down" in r.json()["error"] and "retry-after" in r.headers

    serve(ServeConfig(model="res2net_tiny"), StandInModel(), scenario)


def test_per_request_timeout_is_504(images):
    async def scenario(client, service, load):
        await load
        r = await client.post("/v1/classify", content=images["chelsea.jpg"])
        assert r.status_code == 504 and "did not finish within 0.3 s" in r.json()["error"]

    serve(ServeConfig(model="res2net_tiny", timeout_s=0.3), StandInModel(infer_seconds=1.0), scenario)


def test_full_queue_is_503_with_retry_after(images):
    async def scenario(client, service, load):
        await load
        slow = [asyncio.ensure_future(client.post("/v1/classify", content=images["chelsea.jpg"])) for _ in range(2)]
        while service.batcher.admitted < 2:
            await asyncio.sleep(0.01)
        r = await client.post("/v1/classify", content=images["coffee.jpg"])
        assert r.status_code == 503 and "capacity" in r.json()["error"] and r.headers["retry-after"] == "1"
        r = await client.post("/v2/models/res2net_tiny/infer", content=b"{}")
        assert r.status_code == 503  # refused before the (invalid) body is even parsed
        assert [s.status_code for s in await asyncio.gather(*slow)] == [200, 200]
        assert service.batcher.admitted == 0
        assert service.metrics.rejected.labels("queue_full")._value.get() >= 2

    cfg = ServeConfig(model="res2net_tiny", max_queue=2, max_batch_size=1, max_delay_ms=0)
    serve(cfg, StandInModel(infer_seconds=0.5), scenario)
