"""Load test of ``res2net serve``: throughput and latency with dynamic batching vs without, and overload.

Starts the server itself (127.0.0.1 only, free ports, random weights written to a temp file — no
network), drives it with N concurrent keep-alive clients for a bounded time and request count, and
prints one markdown row per scenario:

* ``batching``: ``--max-batch-size 8 --max-delay-ms 5`` at ``--concurrency`` clients;
* ``no-batching``: ``--max-batch-size 1``, same clients (the baseline);
* ``overload``: ``--max-queue Q`` and ``4 x Q`` clients — every answer must be 200 or 503, the
  server must survive, and its RSS is sampled throughout.

Besides throughput and latency, each scenario reads the server's own ``/metrics`` before and after
the measured window: batches run, mean batch size and forward-pass time per image. Their ratio between
the two batching scenarios is the most dynamic batching *could* gain if nothing but the forward pass
cost anything (decoding, HTTP and the client do not get cheaper in batches), so the report states the
speed-up next to that bound: on a CPU whose forward pass is already nearly as efficient per image at
batch 1 as at batch 8, no scheduler can do better than the bound, and the script says so.

    python scripts/load_test.py                                   # res2net_tiny, 16 clients, 20 s each
    python scripts/load_test.py --model Res2Net50_vd_26w_4s --engine auto --repeat 3 --json out.json
    python scripts/load_test.py --model Res2Net50_vd_26w_4s --engine torch --device cuda  # GPU server

The clients are raw asyncio HTTP/1.1 (one process, little CPU), sending what ``tritonclient.http``
sends: an OIP v2 request with one JPEG in a BYTES tensor, binary tensor data extension. On a small
machine client and server share the CPUs: compare scenarios from the same run only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"  # never anything else: this script only loads a server it started itself


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def test_image(path: str | None) -> bytes:
    if path:
        return Path(path).read_bytes()
    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buf, format="JPEG", quality=90)  # 451x300, a typical web photo
    return buf.getvalue()


def random_weights(model: str, directory: Path) -> Path:
    """Serving speed does not depend on the weights' values; random ones need no download."""
    import safetensors.torch
    import torch

    import res2net

    torch.manual_seed(0)
    m = res2net.create_model(model).eval()
    path = directory / f"{model}-random.safetensors"
    card = res2net.get_card(model)
    origin = "paddle" if card.family == "paddleclas" else "timm"
    safetensors.torch.save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path), {"origin": origin})
    return path


def oip_request(model: str, image: bytes) -> tuple[str, bytes, dict[str, str]]:
    tensor = struct.pack("<I", len(image)) + image
    header = json.dumps(
        {
            "inputs": [
                {"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(tensor)}}
            ],
            "outputs": [{"name": "class_ids", "parameters": {"binary_data": False}}],
        }
    ).encode()
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}
    return f"/v2/models/{model}/infer", header + tensor, headers


# ------------------------------------------------------------------------------------ the client
class Connection:
    """One keep-alive HTTP/1.1 connection; reconnects when the server closes it."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        head = f"POST {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self.writer.write(head.encode() + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length, close = 0, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        await self.reader.readexactly(length)
        if close:
            await self.close()
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None


@dataclass
class Result:
    scenario: str
    concurrency: int
    server_args: str
    requests: int = 0
    ok: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    throughput: float = 0.0  # successful requests per second
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    rss_start_mb: float = 0.0
    rss_max_mb: float = 0.0
    server_alive: bool = True
    batches: int = 0  # forward passes the server ran in the measured window (from its /metrics)
    mean_batch: float = 0.0
    forward_ms_per_image: float = 0.0


async def drive(
    port: int, request, concurrency: int, duration: float, max_requests: int, result: Result
) -> list[float]:
    path, body, headers = request
    latencies: list[float] = []
    budget = [max_requests]
    deadline = time.perf_counter() + duration

    async def client():
        conn = Connection(port)
        try:
            while time.perf_counter() < deadline and budget[0] > 0:
                budget[0] -= 1
                t = time.perf_counter()
                try:
                    status = await conn.post(path, body, headers)
                except (OSError, asyncio.IncompleteReadError, ConnectionError, ValueError) as e:
                    result.errors[type(e).__name__] = result.errors.get(type(e).__name__, 0) + 1
                    await conn.close()
                    await asyncio.sleep(0.05)
                    continue
                result.requests += 1
                result.statuses[str(status)] = result.statuses.get(str(status), 0) + 1
                if status == 200:
                    latencies.append(time.perf_counter() - t)
                elif status == 503:
                    await asyncio.sleep(0.01)  # a polite client backs off a little (Retry-After says 1 s)
        finally:
            await conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - start
    return latencies


def server_counters(port: int) -> dict[str, float]:
    """The server's forward-pass totals from ``/metrics``: batches run, images in them, seconds spent."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    wanted = {
        "res2net_batch_size_count": "batches",
        "res2net_batch_size_sum": "images",
        "res2net_batch_inference_seconds_sum": "seconds",
    }
    counters = dict.fromkeys(wanted.values(), 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                counters[wanted[sample.name]] += sample.value
    return counters


def rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def sample_rss(pid: int, out: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        out.append(rss_mb(pid))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)


# ------------------------------------------------------------------------------------ scenarios
@contextlib.contextmanager
def server(args: argparse.Namespace, weights: Path, extra: list[str], log: Path):
    port = free_port()
    cmd = [sys.executable, "-m", "res2net", "serve", "--model", args.model, "--weights", str(weights)]
    cmd += ["--engine", args.engine, "--host", HOST, "--port", str(port), "--grpc-port", "0", "--no-access-log"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.device:
        cmd += ["--device", args.device]
    cmd += extra
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        import urllib.request

        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                errors = [line for line in log.read_text(errors="replace").splitlines() if " ERROR " in line]
                raise SystemExit(f"server exited with {proc.returncode}: {errors[-1] if errors else f'see {log}'}")
            url = f"http://{HOST}:{port}/v2/health/ready"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"server not ready after 600 s; see {log}")
            time.sleep(0.3)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_scenario(args, weights, image, name, extra, concurrency, log) -> Result:
    result = Result(name, concurrency, " ".join(extra))
    with server(args, weights, extra, log) as (proc, port):
        request = oip_request(args.model, image)

        async def main():
            await drive(port, request, min(concurrency, 4), min(3.0, args.duration), 4 * concurrency, Result("", 0, ""))
            result.rss_start_mb = rss_mb(proc.pid)
            before = server_counters(port)  # after the warm-up: its batches do not count
            samples: list[float] = []
            stop = asyncio.Event()
            sampler = asyncio.ensure_future(sample_rss(proc.pid, samples, stop))
            latencies = await drive(port, request, concurrency, args.duration, args.max_requests, result)
            stop.set()
            await sampler
            return latencies, samples, before, server_counters(port)

        latencies, samples, before, after = asyncio.run(main())
        result.server_alive = proc.poll() is None
        result.rss_max_mb = max(samples, default=0.0)
    delta = {k: after[k] - before[k] for k in after}
    result.batches = int(delta["batches"])
    if delta["batches"] and delta["images"]:
        result.mean_batch = round(delta["images"] / delta["batches"], 2)
        result.forward_ms_per_image = round(1000 * delta["seconds"] / delta["images"], 3)
    result.ok = len(latencies)
    result.throughput = result.ok / result.seconds if result.seconds else 0.0
    if latencies:
        p = np.percentile(np.array(latencies) * 1000, [50, 95, 99])
        result.p50_ms, result.p95_ms, result.p99_ms = (round(float(v), 1) for v in p)
    return result


def batching_summary(results: list[Result]) -> dict[str, float] | None:
    """Speed-up of ``batching`` over ``no-batching`` (median throughputs) next to its forward-only bound.

    ``forward_gain`` = forward time per image without batching / with batching, as the server itself
    measured it under the load. If only the forward pass cost anything, the speed-up would equal it;
    the parts that do not batch (decoding, HTTP, the client on the same cores) only pull the speed-up
    below it — unless the unbatched server also wastes time between requests, which batching removes.
    """

    def median(name: str, attr: str) -> float:
        values = [getattr(r, attr) for r in results if r.scenario == name and getattr(r, attr)]
        return float(np.median(values)) if values else 0.0

    speedup_parts = median("batching", "throughput"), median("no-batching", "throughput")
    forward_parts = median("no-batching", "forward_ms_per_image"), median("batching", "forward_ms_per_image")
    if not all(speedup_parts) or not all(forward_parts):
        return None
    speedup = speedup_parts[0] / speedup_parts[1]
    forward_gain = forward_parts[0] / forward_parts[1]
    return {"speedup": speedup, "forward_gain": forward_gain, "share_of_bound": speedup / forward_gain}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="res2net_tiny")
    parser.add_argument("--weights", help="weights file (default: random weights for --model, no download)")
    parser.add_argument("--engine", default="torch")
    parser.add_argument("--threads", type=int, help="server torch threads (default: all cores)")
    parser.add_argument("--device", help="server device, e.g. cuda (default: the server's choice)")
    parser.add_argument("--concurrency", type=int, default=16, help="clients in the batching scenarios")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per scenario (bounded)")
    parser.add_argument("--max-requests", type=int, default=20_000, help="request cap per scenario (bounded)")
    parser.add_argument("--max-queue", type=int, default=16, help="queue bound in the overload scenario")
    parser.add_argument("--scenarios", default="batching,no-batching,overload")
    parser.add_argument("--repeat", type=int, default=1, help="run the scenarios N times, alternating their order")
    parser.add_argument("--image", help="image to send (default: skimage's chelsea as JPEG)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.duration > 300 or args.max_requests > 200_000 or not 1 <= args.repeat <= 10:
        parser.error("keep the load test bounded: --duration <= 300, --max-requests <= 200000, --repeat <= 10")

    image = test_image(args.image)
    tmp = Path(tempfile.mkdtemp(prefix="res2net-load-"))
    weights = Path(args.weights) if args.weights else random_weights(args.model, tmp)
    log = tmp / "server.log"
    scenarios = {
        "batching": (["--max-batch-size", "8", "--max-delay-ms", "5", "--max-queue", "64"], args.concurrency),
        "no-batching": (["--max-batch-size", "1", "--max-delay-ms", "0", "--max-queue", "64"], args.concurrency),
        "overload": (
            ["--max-batch-size", "8", "--max-delay-ms", "5", "--max-queue", str(args.max_queue)],
            4 * args.max_queue,
        ),
    }
    results = []
    names = args.scenarios.split(",")
    for rep in range(args.repeat):  # alternate the order, so slow drifts of a shared machine cancel out
        for name in names if rep % 2 == 0 else names[::-1]:
            extra, concurrency = scenarios[name]
            print(f"# {name}: {concurrency} clients, server {' '.join(extra)}", file=sys.stderr, flush=True)
            results.append(run_scenario(args, weights, image, name, extra, concurrency, log))
            print(f"#   {asdict(results[-1])}", file=sys.stderr, flush=True)

    cpu = platform.processor() or platform.machine()
    device = f", device {args.device}" if args.device else ""
    print(
        f"\nmodel {args.model}, engine {args.engine}{device}, {os.cpu_count()} CPUs ({cpu}), "
        f"image {len(image)} bytes JPEG\n"
    )
    print(
        "| scenario | clients | server flags | req/s | p50 ms | p95 ms | p99 ms | statuses | client errors "
        "| RSS MB (start → max) | mean batch | forward ms/image |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r.statuses.items()))
        errors = ", ".join(f"{k}: {v}" for k, v in r.errors.items()) or "0"
        print(
            f"| {r.scenario} | {r.concurrency} | `{r.server_args}` | {r.throughput:.1f} | {r.p50_ms} | {r.p95_ms} | "
            f"{r.p99_ms} | {statuses} | {errors} | {r.rss_start_mb:.0f} → {r.rss_max_mb:.0f} | {r.mean_batch} | "
            f"{r.forward_ms_per_image} |"
        )
    summary = batching_summary(results)
    if summary:
        runs = f" (medians of {args.repeat} alternating runs)" if args.repeat > 1 else ""
        print(
            f"\nbatching speed-up at {args.concurrency} clients: {summary['speedup']:.2f}x{runs}; "
            f"forward pass per image {summary['forward_gain']:.2f}x cheaper in batches "
            f"(the most batching can gain here), so {summary['share_of_bound']:.0%} of that bound reached"
        )
    by = {r.scenario: r for r in results}
    failed = [r.scenario for r in results if not r.server_alive or r.errors]
    if "overload" in by:
        bad = set(by["overload"].statuses) - {"200", "503"}
        if bad:
            failed.append(f"overload answered {sorted(bad)}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    if failed:
        print(f"\nFAILED: {failed} (server log: {log})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
