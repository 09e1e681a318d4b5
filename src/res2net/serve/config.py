"""Server settings: one dataclass shared by the CLI, the app factory and the tests."""

from __future__ import annotations

import os
from dataclasses import dataclass

from res2net.serve.errors import ServeError


@dataclass
class ServeConfig:
    """Everything ``res2net serve`` can be told. Defaults suit one small CPU box.

    Limits exist so that no request, and no crowd of requests, can make the process grow without
    bound: ``max_queue`` images may be admitted at once (decoding, waiting or in a batch), each
    request body is at most ``max_body_mb``, each decoded image at most ``max_pixels``. And so that
    slow clients cannot starve the others: request headers must arrive within ``header_timeout_s``,
    the body within ``body_timeout_s`` after them, and beyond ``max_connections`` open connections
    the longest-idle one is closed to let a new one in (docs/serving.md, "Limits").
    """

    model: str
    weights: str | None = None
    engine: str = "auto"
    device: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int = 8001  # 0: no gRPC endpoint
    max_batch_size: int = 8
    max_delay_ms: float = 5.0
    max_queue: int = 64
    workers: int = 1
    timeout_s: float = 30.0
    max_body_mb: float = 32.0
    max_pixels: int = 40_000_000  # 40 Mpx: any camera photo; a 120 MB RGB buffer at most
    top_k: int = 5
    threads: int | None = None  # torch intra-op threads; default: CPU cores / workers
    decode_threads: int | None = None  # image decoding pool; default: min(4, CPU cores)
    max_connections: int = 1000  # open HTTP connections; beyond, the longest-idle one is closed
    header_timeout_s: float = 10.0  # request line + headers must arrive within this (slowloris)
    body_timeout_s: float = 60.0  # the whole body must arrive within this after the headers
    access_log: bool = True
    warmup: bool = True

    def __post_init__(self) -> None:
        checks = {
            "max_batch_size": self.max_batch_size >= 1,
            "max_delay_ms": self.max_delay_ms >= 0,
            "max_queue": self.max_queue >= 1,
            "workers": self.workers >= 1,
            "timeout_s": self.timeout_s > 0,
            "max_body_mb": self.max_body_mb > 0,
            "max_pixels": self.max_pixels > 0,
            "top_k": self.top_k >= 1,
            "max_connections": self.max_connections >= 1,
            "header_timeout_s": self.header_timeout_s > 0,
            "body_timeout_s": self.body_timeout_s > 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ServeError(f"invalid server settings: {', '.join(f'{b}={getattr(self, b)!r}' for b in bad)}")
        if self.workers > 1 and self.port == 0:
            raise ServeError("--workers > 1 needs a fixed --port (the workers share it)")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def max_images_per_request(self) -> int:
        """A request can never hold more images than the whole queue admits."""
        return self.max_queue

    @property
    def connection_limit(self) -> int:
        """Open HTTP connections (and concurrent gRPC calls) at most."""
        return self.max_connections

    @property
    def torch_threads(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.workers)

    @property
    def decode_pool_size(self) -> int:
        return self.decode_threads or max(1, min(4, os.cpu_count() or 1))
