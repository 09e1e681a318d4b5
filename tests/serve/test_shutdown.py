"""SIGTERM drains: requests in flight complete, new connections are refused, exit code 0."""

from __future__ import annotations

import signal
import socket
import threading
import time

import httpx

from tests.serve.conftest import run_server


def test_sigterm_drains_in_flight_requests(tiny_weights, tmp_path, images):
    # A long batching delay keeps the requests in the server when SIGTERM arrives.
    args = ("--max-batch-size", "16", "--max-delay-ms", "4000")
    with run_server(tmp_path, *args, weights=tiny_weights) as server:
        results: list[int] = []

        def post():
            r = httpx.post(server.url("/v1/classify"), content=images["chelsea.jpg"], timeout=60)
            results.append(r.status_code)

        threads = [threading.Thread(target=post) for _ in range(3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while server.metric("res2net_admitted_images") < 3:
            assert time.monotonic() < deadline, "requests never reached the queue"
            time.sleep(0.05)
        server.proc.send_signal(signal.SIGTERM)
        refused = False  # the listener closes at once: a load balancer moves new work elsewhere
        deadline = time.monotonic() + 3
        while not refused and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
                time.sleep(0.05)
            except OSError:
                refused = True
        assert refused, "still accepting connections 3 s after SIGTERM"
        assert all(t.is_alive() for t in threads), "in-flight requests finished before the check: test proves nothing"
        for t in threads:
            t.join(60)
        assert results == [200, 200, 200]
        assert server.proc.wait(60) == 0
        log = server.output()
        assert "draining" in log and "stopped" in log


def test_model_that_fails_to_load_exits_nonzero(tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not safetensors")
    with run_server(tmp_path, weights=bad, ready=False) as server:
        assert server.proc.wait(120) == 1
        assert "failed to load" in server.output()
