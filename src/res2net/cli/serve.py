"""``res2net serve``: the inference server (see docs/serving.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from res2net.models import get_card
from res2net.runtime import ENGINE_NAMES
from res2net.serve.config import ServeConfig
from res2net.serve.errors import ServeError
from res2net.serve.server import run


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="registered model name, e.g. Res2Net50_vd_26w_4s_ssld")
    p.add_argument("--weights", help="weights file (.pdparams, .pth, .safetensors ...); default: the model's own")
    p.add_argument("--engine", default="auto", help=f"inference engine: {', '.join(('auto', *ENGINE_NAMES))}")
    p.add_argument("--device", help="e.g. cpu, cuda:0 (default: the engine's choice)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for all interfaces)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port: OIP REST, /v1/classify, web demo, /metrics")
    p.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (OIP GRPCInferenceService); 0 disables")
    p.add_argument("--max-batch-size", type=int, default=8, help="images per forward pass")
    p.add_argument("--max-delay-ms", type=float, default=5.0, help="how long a request may wait to fill a batch")
    p.add_argument("--max-queue", type=int, default=64, help="images admitted at once; beyond that: 503")
    p.add_argument("--workers", type=int, default=1, help="server processes sharing the ports (each loads the model)")
    p.add_argument("--timeout", type=float, default=30.0, dest="timeout_s", help="per-request timeout, seconds")
    p.add_argument("--max-body-mb", type=float, default=32.0, help="request body limit (413 beyond)")
    p.add_argument(
        "--max-connections", type=int, default=1000, help="open HTTP connections; beyond, the longest-idle is closed"
    )
    p.add_argument(
        "--header-timeout", type=float, default=10.0, dest="header_timeout_s", help="seconds to send request headers"
    )
    p.add_argument(
        "--body-timeout", type=float, default=60.0, dest="body_timeout_s", help="seconds to send the body (408 beyond)"
    )
    p.add_argument("--max-pixels", type=int, default=40_000_000, help="decoded image size limit (decompression bombs)")
    p.add_argument("--top-k", type=int, default=5, help="classes returned per image unless a request asks otherwise")
    p.add_argument("--threads", type=int, help="torch threads per worker (default: CPU cores / workers)")
    p.add_argument("--no-access-log", action="store_true", help="no JSON access-log lines on stdout")


def main(args: argparse.Namespace) -> int:
    get_card(args.model)  # an unknown name fails here with the registry's message
    if args.weights and not Path(args.weights).is_file():
        raise ServeError(f"{args.weights}: no such weights file")
    cfg = ServeConfig(
        model=args.model,
        weights=args.weights,
        engine=args.engine,
        device=args.device,
        host=args.host,
        port=args.port,
        grpc_port=args.grpc_port,
        max_batch_size=args.max_batch_size,
        max_delay_ms=args.max_delay_ms,
        max_queue=args.max_queue,
        workers=args.workers,
        timeout_s=args.timeout_s,
        max_body_mb=args.max_body_mb,
        max_connections=args.max_connections,
        header_timeout_s=args.header_timeout_s,
        body_timeout_s=args.body_timeout_s,
        max_pixels=args.max_pixels,
        top_k=args.top_k,
        threads=args.threads,
        access_log=not args.no_access_log,
    )
    return run(cfg)
