"""Process lifecycle: bind, serve REST and gRPC on one event loop, load the model, drain on SIGTERM.

Order of events:

1. Both ports are bound first (a taken port fails fast, before any model is loaded).
2. Liveness answers at once; the model is loaded and warmed up in the background, and only then
   does readiness (``/v2/health/ready``, gRPC ``ServerReady``) turn true.
3. SIGTERM/SIGINT: readiness turns false, new inference requests get 503 / UNAVAILABLE, the
   listeners close, in-flight requests finish (up to the request timeout), then the process exits 0.
   A second signal stops at once.

``--workers N`` runs N such processes sharing the ports (``SO_REUSEPORT``: the kernel spreads
connections); the parent forwards SIGTERM and exits non-zero if a worker dies on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import resource
import shutil
import signal
import socket
import sys
import tempfile

import uvicorn

from res2net.errors import Res2NetError
from res2net.serve.config import ServeConfig
from res2net.serve.errors import ServeError

log = logging.getLogger("res2net.serve")


class _HTTPServer(uvicorn.Server):
    """uvicorn without its own signal handling: SIGTERM must drain gRPC and HTTP together."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        pass


def _bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def _http_server(app, cfg: ServeConfig, guard) -> _HTTPServer:
    config = uvicorn.Config(
        app,
        http=guard.protocol(),  # header deadline + connection cap (connections.py), not limit_concurrency
        log_config=None,
        access_log=False,  # ours is structured (middleware.ServerMiddleware)
        lifespan="off",
        timeout_keep_alive=5,
        timeout_graceful_shutdown=int(cfg.timeout_s) + 5,
        server_header=False,
    )
    return _HTTPServer(config)


def _raise_open_files_limit(wanted: int) -> None:
    """Room for ``--max-connections`` sockets: raise the soft open-files limit (up to the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < wanted:
            log.warning("open-files limit %d is below the %d that --max-connections needs", new, wanted)


def _configure_access_log(enabled: bool) -> None:
    """Access lines are JSON objects on stdout, one per request, without the human log prefix."""
    access = logging.getLogger("res2net.serve.access")
    access.propagate = False
    access.setLevel(logging.INFO if enabled else logging.WARNING)
    if not access.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(handler)


async def serve(cfg: ServeConfig, reuse_port: bool = False) -> int:
    """Run one server process until SIGTERM/SIGINT; returns the exit code."""
    from res2net.serve.app import create_app  # here, in the worker: PROMETHEUS_MULTIPROC_DIR is set by now
    from res2net.serve.connections import ConnectionGuard
    from res2net.serve.grpc_service import create_grpc_server, grpc_address
    from res2net.serve.metrics import Metrics
    from res2net.serve.service import InferenceService

    _configure_access_log(cfg.access_log)
    _raise_open_files_limit(cfg.connection_limit + 256)
    service = InferenceService(cfg, Metrics())
    app = create_app(service)
    sock = _bind(cfg.host, cfg.port, reuse_port)
    grpc_server = create_grpc_server(service, cfg, reuse_port) if cfg.grpc_port else None
    http = _http_server(app, cfg, ConnectionGuard(cfg.connection_limit, cfg.header_timeout_s, service.metrics))
    loop = asyncio.get_running_loop()
    exit_code = 0
    background: list[asyncio.Future] = []

    def stop(reason: str) -> None:
        if service.draining:
            log.warning("%s again: stopping without waiting for in-flight requests", reason)
            http.force_exit = True
            return
        log.info("%s: draining (readiness off, new requests refused, in-flight requests finish)", reason)
        service.start_draining()
        http.should_exit = True
        if grpc_server is not None:
            background.append(asyncio.ensure_future(grpc_server.stop(grace=cfg.timeout_s)))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig.name)

    def loaded(task: asyncio.Task) -> None:
        nonlocal exit_code
        if task.cancelled():
            return
        if task.exception() is not None:
            e = task.exception()
            # our own errors say what is wrong in one line; anything else gets its traceback
            log.error("model %s failed to load: %s", cfg.model, e, exc_info=None if isinstance(e, Res2NetError) else e)
            exit_code = 1
            stop("load failure")

    if grpc_server is not None:
        await grpc_server.start()
    load = asyncio.ensure_future(service.load())
    load.add_done_callback(loaded)
    port = sock.getsockname()[1]
    log.info(
        "serving %s on http://%s:%d (OIP v2, /v1/classify, /{model}/prediction, demo at /)%s; pid %d",
        cfg.model,
        cfg.host,
        port,
        f" and grpc {grpc_address(cfg.host, cfg.grpc_port)}" if grpc_server else "",
        os.getpid(),
    )
    try:
        await http.serve(sockets=[sock])
    finally:
        if grpc_server is not None and not background:
            background.append(asyncio.ensure_future(grpc_server.stop(grace=cfg.timeout_s)))
        await asyncio.gather(*background, return_exceptions=True)
        if not load.done():
            load.cancel()
        await service.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        sock.close()
    log.info("stopped")
    return exit_code


def _worker(cfg: ServeConfig, index: int) -> None:
    os.setpgrp()  # a terminal's Ctrl+C reaches only the parent, which forwards one SIGTERM
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s [worker {index}] %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        sys.exit(asyncio.run(serve(cfg, reuse_port=True)))
    except ServeError as e:
        log.error("%s", e)
        sys.exit(1)


def _supervise(cfg: ServeConfig) -> int:
    from multiprocessing.connection import wait

    metrics_dir = tempfile.mkdtemp(prefix="res2net-serve-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # inherited: workers aggregate their metrics
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_worker, args=(cfg, i), name=f"res2net-serve-{i}") for i in range(cfg.workers)]
    stopping = False

    def forward(signum, frame) -> None:
        nonlocal stopping
        stopping = True
        for p in workers:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        for p in workers:
            p.start()
        log.info("started %d workers on port %d: %s", cfg.workers, cfg.port, [p.pid for p in workers])
        alive = list(workers)
        while alive:
            for sentinel in wait([p.sentinel for p in alive]):
                p = next(p for p in alive if p.sentinel == sentinel)
                p.join()
                alive.remove(p)
                _mark_dead(p.pid)
                if p.exitcode != 0:
                    code = 1
                if not stopping:
                    log.error("worker pid %d exited with %s; stopping the others", p.pid, p.exitcode)
                    code = 1
                    forward(signal.SIGTERM, None)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return code


def _mark_dead(pid: int) -> None:
    with contextlib.suppress(Exception):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def run(cfg: ServeConfig) -> int:
    """Serve until stopped; returns the process exit code."""
    if cfg.workers > 1:
        return _supervise(cfg)
    return asyncio.run(serve(cfg))
