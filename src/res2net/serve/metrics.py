"""Prometheus metrics of the server (``GET /metrics``).

Each :class:`Metrics` owns its registry, so tests can build several apps in one process. With
``--workers N`` the workers write to ``$PROMETHEUS_MULTIPROC_DIR`` (set by the parent before they
start) and any worker's ``/metrics`` reports the sum over all of them.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """The server's metrics. Names start with ``res2net_``; every histogram is in seconds or images."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "res2net_requests",
            "Requests answered, by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "res2net_request_duration_seconds",
            "Time from request start to response, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram("res2net_batch_size", "Images per forward pass.", buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram(
            "res2net_batch_inference_seconds", "Forward pass time per batch.", buckets=LATENCY_BUCKETS, registry=r
        )
        self.images = Counter("res2net_images", "Images classified, by input kind.", ["kind"], registry=r)
        self.image_errors = Counter("res2net_image_errors", "Images that could not be decoded.", registry=r)
        self.client_disconnects = Counter(
            "res2net_client_disconnects",
            "Requests whose client hung up before sending its whole body (no response possible), by route.",
            ["route"],
            registry=r,
        )
        self.connections = Gauge(
            "res2net_http_connections", "Open HTTP connections.", registry=r, multiprocess_mode="livesum"
        )
        self.rejected = Counter(
            "res2net_rejected", "Requests refused by backpressure or limits, by reason.", ["reason"], registry=r
        )
        self.queue_depth = Gauge(
            "res2net_queue_depth", "Images waiting for a batch.", registry=r, multiprocess_mode="livesum"
        )
        self.admitted = Gauge(
            "res2net_admitted_images",
            "Images admitted (decoding, queued or in the running batch); at most --max-queue.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.model_load_seconds = Gauge(
            "res2net_model_load_seconds", "Time to load the model.", registry=r, multiprocess_mode="max"
        )
        self.warmup_seconds = Gauge(
            "res2net_model_warmup_seconds", "Time to warm the model up.", registry=r, multiprocess_mode="max"
        )
        self.ready = Gauge(
            "res2net_ready", "1 when the model is loaded and warmed up.", registry=r, multiprocess_mode="livemin"
        )

    def render(self) -> tuple[bytes, str]:
        """The exposition text; across all workers when running multi-process."""
        if multiprocess_dir():
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
