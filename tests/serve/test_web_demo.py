"""End to end in headless Chromium: pick a real photo on the demo page, read the rendered top-5."""

from __future__ import annotations

import json
import os

import pytest

from tests.serve.cdp import Browser, find_chromium

READ_RESULTS = """JSON.stringify([...document.querySelectorAll('#results li')].map(li => ({
  label: li.querySelector('.label').textContent,
  prob: li.querySelector('.prob').textContent,
  id: Number(li.dataset.classId),
  width: li.querySelector('.fill').style.width,
})))"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    executable = find_chromium()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (apt-get install -y chromium); CI must run the browser test")
        pytest.skip("chromium not installed")
    b = Browser(executable, tmp_path_factory.mktemp("chromium-profile"))
    for domain in ("Page", "Runtime", "Network", "Log", "DOM"):
        b.call(f"{domain}.enable")
    yield b
    b.close()


def open_demo(browser: Browser, server) -> None:
    browser.call("Page.navigate", {"url": server.url("/")})
    browser.wait_for("document.readyState === 'complete' && document.getElementById('file') !== null")
    browser.wait_for("document.getElementById('model-info').textContent.includes('res2net_tiny')")


def choose_file(browser: Browser, path) -> None:
    node = browser.call("Runtime.evaluate", {"expression": "document.getElementById('file')"})["result"]
    browser.call("DOM.setFileInputFiles", {"files": [str(path)], "objectId": node["objectId"]})


def test_upload_a_photo_and_read_the_top5(browser, server, images, predictor, tmp_path):
    photo = tmp_path / "chelsea.jpg"
    photo.write_bytes(images["chelsea.jpg"])
    expected = predictor.predict([photo])[0]
    open_demo(browser, server)
    choose_file(browser, photo)
    assert browser.wait_for("document.body.dataset.state") == "done", browser.evaluate("document.body.innerText")

    rows = json.loads(browser.evaluate(READ_RESULTS))
    assert [r["label"] for r in rows] == expected["label_names"]
    assert [r["id"] for r in rows] == expected["class_ids"]
    for row, score in zip(rows, expected["scores"]):
        assert row["prob"].endswith("%") and abs(float(row["prob"][:-1]) - 100 * score) <= 0.0051
        assert abs(float(row["width"][:-1]) - 100 * score) <= 0.0051  # the bar is as long as the number says
    latency = browser.evaluate("document.getElementById('latency').textContent")
    assert "ms" in latency and not browser.evaluate("document.getElementById('latency').hidden")
    assert "chelsea.jpg" in browser.evaluate("document.getElementById('status').textContent")

    # The page fetched nothing but this server (and its own blob: preview), and nothing was blocked.
    urls = [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"]
    assert urls and all(u.startswith(server.url("/")) or u.startswith(("blob:", "data:")) for u in urls), urls
    errors = [e["params"]["entry"] for e in browser.events if e.get("method") == "Log.entryAdded"]
    assert not [e for e in errors if e.get("level") == "error"], errors


def test_a_bad_file_shows_the_servers_reason(browser, server, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"definitely not a photo\n" * 10)
    open_demo(browser, server)
    choose_file(browser, bad)
    assert browser.wait_for("document.body.dataset.state") == "error"
    status = browser.evaluate("document.getElementById('status').textContent")
    assert "notes.jpg" in status and "not an image" in status
    assert browser.evaluate("document.querySelectorAll('#results li').length") == 0
