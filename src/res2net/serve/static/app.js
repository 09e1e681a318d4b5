// res2net web demo: send the chosen image to POST /v1/classify, draw the top-5 with bars.
"use strict";
(function () {
  const drop = document.getElementById("drop");
  const input = document.getElementById("file");
  const preview = document.getElementById("preview");
  const statusEl = document.getElementById("status");
  const results = document.getElementById("results");
  const latency = document.getElementById("latency");
  const TOP_K = 5;

  fetch("/v1/info").then((r) => r.json()).then((info) => {
    document.getElementById("model-info").textContent =
      `Model ${info.model} · ${info.num_classes} classes` + (info.ready ? "" : " · still loading");
  }).catch(() => {});

  function setStatus(text, isError) {
    statusEl.textContent = text;
    statusEl.className = isError ? "error" : "";
  }

  function render(result) {
    results.replaceChildren();
    result.label_names.forEach((name, i) => {
      const p = result.scores[i];
      const li = document.createElement("li");
      li.dataset.classId = String(result.class_ids[i]);
      li.dataset.score = String(p);
      const row = document.createElement("div");
      row.className = "row";
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = name;
      const prob = document.createElement("span");
      prob.className = "prob";
      prob.textContent = (100 * p).toFixed(2) + "%";
      row.append(label, prob);
      const track = document.createElement("div");
      track.className = "track";
      const fill = document.createElement("div");
      fill.className = "fill";
      fill.style.width = Math.max(0, Math.min(100, 100 * p)).toFixed(2) + "%";
      track.append(fill);
      li.append(row, track);
      results.append(li);
    });
  }

  async function classify(file) {
    if (!file) return;
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
    results.replaceChildren();
    latency.hidden = true;
    setStatus(`Classifying ${file.name}…`, false);
    const form = new FormData();
    form.append("file", file, file.name);
    const t0 = performance.now();
    try {
      const resp = await fetch(`/v1/classify?top_k=${TOP_K}`, { method: "POST", body: form });
      const body = await resp.json().catch(() => ({ error: `HTTP ${resp.status}` }));
      const roundTrip = performance.now() - t0;
      if (!resp.ok) {
        setStatus(body.error || `HTTP ${resp.status}`, true);
        document.body.dataset.state = "error";
        return;
      }
      const r = body.results[0];
      if (r.error) {
        setStatus(r.error, true);
        document.body.dataset.state = "error";
        return;
      }
      render(r);
      setStatus(`Top-${r.class_ids.length} for ${file.name}`, false);
      latency.textContent = `Server ${body.latency_ms.toFixed(1)} ms · round trip ${roundTrip.toFixed(1)} ms`;
      latency.hidden = false;
      document.body.dataset.state = "done";
    } catch (err) {
      setStatus(`Request failed: ${err}`, true);
    }
  }

  input.addEventListener("change", () => classify(input.files[0]));
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault();
    drop.classList.remove("over");
  }));
  drop.addEventListener("drop", (e) => classify(e.dataTransfer.files[0]));
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") input.click();
  });
})();
