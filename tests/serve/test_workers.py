"""``--workers 2``: two processes share the ports, metrics add up across them, SIGTERM stops both."""

from __future__ import annotations

import concurrent.futures
import time

import httpx

from tests.serve.conftest import run_server


def test_two_workers_share_the_port(tiny_weights, tmp_path, images, predictor):
    with run_server(tmp_path, "--workers", "2", "--threads", "1", weights=tiny_weights) as server:
        # Readiness above came from one worker; res2net_ready is the minimum over live workers.
        deadline = time.monotonic() + 120
        while len(_pids(server)) < 2 or server.metric("res2net_ready") != 1:
            assert time.monotonic() < deadline, server.output()[-2000:]
            time.sleep(0.5)

        def one(_):
            with httpx.Client() as c:  # a new connection each time: the kernel spreads them
                r = c.post(server.url("/v1/classify"), content=images["coffee.jpg"], timeout=120)
                return r.status_code, r.json()["results"][0]["class_ids"]

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            outs = list(pool.map(one, range(12)))
        expected = predictor.predict([images["coffee.jpg"]])[0]["class_ids"]
        assert outs == [(200, expected)] * 12
        assert server.metric("res2net_requests_total", route="/v1/classify", status="200") == 12
        assert server.stop() == 0
        assert server.output().count("stopped") == 2


def _pids(server) -> set[str]:
    return {line.split("pid ")[-1] for line in server.output().splitlines() if "serving res2net_tiny" in line}
