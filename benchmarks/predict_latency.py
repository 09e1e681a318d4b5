"""Side-by-side CPU latency and end-to-end throughput: res2net's engines vs PaddleClas's own engine.

Each engine runs in its own worker process (ours in this interpreter's environment, Paddle's in
``.venv-paddle``); the driver talks to them over pipes and runs **one at a time, alternating**
(round r: Paddle, ours-1, ours-2, ..., then the next round), so a noisy neighbour on a shared
machine hurts every engine alike. Idle workers block on a pipe and use no CPU.

* ``latency``: model-only time of one ``[B, 3, 224, 224]`` float32 batch (random input, warm-up
  first), median over ``--rounds`` x ``--iters`` runs, as PaddleClas measures (paddleclas.md §6).
  The anchor is Paddle Inference with oneDNN, exactly as ``deploy/utils/predictor.py`` configures it
  (mkldnn on, cache capacity 10, IR optim, memory optim, zero-copy), on PaddleClas's own
  ``Res2Net50_vd_26w_4s`` network followed by the export wrapper's softmax.
* ``e2e``: JPEG folder -> top-5, images/s: PaddleClas's ``predict_cls.py`` loop (cv2.imread, its
  preprocess ops, Paddle Inference, Topk) against ``res2net.Predictor.iter_predict`` on the same
  folder, both after their start-up.

Weights: latency does not depend on weight values, so both sides use random weights, except that a
reduced-precision engine is only *allowed* by ``auto`` once its accuracy check passes on a trained
model (tests/test_predict.py checks that; pass ``--weights`` with real weights to check it here).
Without ``--weights``, ``auto`` is reported as the engine ``auto`` ranks first on this machine.

    .venv/bin/python benchmarks/predict_latency.py                       # everything, ~10 min on 2 cores
    .venv/bin/python benchmarks/predict_latency.py --engines openvino:fp32 openvino:int8 --batch-sizes 1
    .venv/bin/python benchmarks/predict_latency.py --no-e2e --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ENGINES = ["torch:fp32", "onnxruntime:fp32", "openvino:fp32", "openvino:bf16", "onnxruntime:int8", "auto"]


# ============================================================================ workers (child processes)
def _serve(load, run_latency, run_e2e) -> None:
    """Worker loop: JSON commands on stdin, JSON replies on stdout (real stdout kept for replies)."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything libraries print goes to stderr
    info = load()
    out.write(json.dumps({"ready": True, **info}) + "\n")
    out.flush()
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "latency":
            reply = {"times": run_latency(cmd["batch"], cmd["iters"], cmd["warmup"])}
        elif cmd["cmd"] == "e2e":
            reply = run_e2e(cmd["dir"], cmd["batch"])
        else:
            break
        out.write(json.dumps(reply) + "\n")
        out.flush()


def _time_loop(fn, x, iters: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return times


def worker_ours(args) -> None:
    import numpy as np

    state = {}

    def load():
        import res2net

        check = args.weights is not None and args.engine == "auto"
        p = res2net.Predictor(
            args.model,
            weights=args.weights or args.random_weights,
            engine=args.engine,
            precision=args.precision,
            threads=args.threads,
            check=check,
            batch_size=64,
            engine_options={"split_batches": False} if args.variant == "nosplit" else None,
        )
        state["p"] = p
        return {"engine": p.engine.describe()}

    def run_latency(batch, iters, warmup):
        x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
        return _time_loop(state["p"].engine.forward, x, iters, warmup)

    def run_e2e(folder, batch):
        p = state["p"]
        lines = []
        t = time.perf_counter()
        for r in p.iter_predict(folder, batch_size=batch):
            lines.append(json.dumps(r))
        dt = time.perf_counter() - t
        return {"images": len(lines), "seconds": dt}

    _serve(load, run_latency, run_e2e)


def worker_paddle(args) -> None:
    """Paddle Inference on PaddleClas's Res2Net50_vd_26w_4s, configured as PaddleClas's deploy predictor."""
    import numpy as np

    state = {}

    def load():
        import paddle
        from paddle.static import InputSpec
        from paddleclas.ppcls.arch.backbone.model_zoo import res2net_vd

        paddle.set_device("cpu")
        net = paddle.nn.Sequential(res2net_vd.Res2Net50_vd_26w_4s(class_num=1000), paddle.nn.Softmax(axis=-1))
        net.eval()
        d = Path(tempfile.mkdtemp(prefix="paddle_r2n_"))
        paddle.jit.save(net, str(d / "inference"), input_spec=[InputSpec([None, 3, 224, 224], "float32")])
        state["dir"] = d
        state["predictor"], _ = _paddle_predictor(d, args.threads)
        return {"engine": f"paddle inference {paddle.__version__} oneDNN fp32 ({args.threads} threads)"}

    def run_latency(batch, iters, warmup):
        pred = state["predictor"]
        inp = pred.get_input_handle(pred.get_input_names()[0])
        out = pred.get_output_handle(pred.get_output_names()[0])
        x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)

        def run(x):
            inp.reshape(list(x.shape))
            inp.copy_from_cpu(x)
            pred.run()
            return out.copy_to_cpu()

        return _time_loop(run, x, iters, warmup)

    def run_e2e(folder, batch):
        return _paddle_e2e(state["dir"], folder, batch, args.threads)

    _serve(load, run_latency, run_e2e)


def _paddle_predictor(model_dir: Path, threads: int):
    """PaddleClas's ``Predictor.create_paddle_predictor`` CPU branch.

    One deviation: with Paddle 3.3's PIR programs ``enable_memory_optim()`` makes ``create_predictor``
    fail ("Not find predictor_id 0 and pass_name memory_optimize_pass") — PaddleClas 2.6's own
    ``predict_cls.py`` fails the same way — so it is tried first and dropped if it fails. It only
    reuses buffers; it does not change the kernels.
    """
    from paddle.inference import Config, create_predictor

    def make(memory_optim: bool):
        config = Config(str(model_dir), "inference")
        config.disable_gpu()
        config.set_mkldnn_cache_capacity(10)
        config.enable_mkldnn()
        config.set_cpu_math_library_num_threads(threads)
        config.disable_glog_info()
        config.switch_ir_optim(True)
        if memory_optim:
            config.enable_memory_optim()
        config.switch_use_feed_fetch_ops(False)
        return create_predictor(config), config

    try:
        return make(True)
    except ValueError:
        return make(False)


def _paddle_e2e(model_dir: Path, folder: str, batch: int, threads: int) -> dict:
    """PaddleClas's ``deploy/python/predict_cls.py`` main loop, verbatim in substance, timed."""
    import contextlib
    import io

    import cv2
    import paddleclas
    from paddleclas.deploy.python.predict_cls import ClsPredictor
    from paddleclas.deploy.utils.get_image_list import get_image_list

    label_file = Path(paddleclas.__file__).parent / "ppcls" / "utils" / "imagenet1k_label_list.txt"
    config = {
        "Global": {
            "infer_imgs": folder,
            "inference_model_dir": str(model_dir),
            "batch_size": batch,
            "use_gpu": False,
            "enable_mkldnn": True,
            "cpu_num_threads": threads,
            "enable_benchmark": False,
            "use_fp16": False,
            "ir_optim": True,
            "use_tensorrt": False,
            "gpu_mem": 8000,
            "enable_profile": False,
        },
        "PreProcess": {
            "transform_ops": [
                {"ResizeImage": {"resize_short": 256}},
                {"CropImage": {"size": 224}},
                {
                    "NormalizeImage": {
                        "scale": 0.00392157,
                        "mean": [0.485, 0.456, 0.406],
                        "std": [0.229, 0.224, 0.225],
                        "order": "",
                        "channel_num": 3,
                    }
                },
                {"ToCHWImage": None},
            ]
        },
        "PostProcess": {"main_indicator": "Topk", "Topk": {"topk": 5, "class_id_map_file": str(label_file)}},
    }

    class Args(dict):
        __getattr__ = dict.get

    config["Global"] = Args(config["Global"])
    # ClsPredictor.__init__ minus its create_paddle_predictor call (see _paddle_predictor); predict()
    # below is PaddleClas's own: its preprocess ops, zero-copy run and Topk postprocess.
    from paddleclas.deploy.python.postprocess import build_postprocess
    from paddleclas.deploy.python.preprocess import create_operators

    predictor = ClsPredictor.__new__(ClsPredictor)
    predictor.args = config["Global"]
    predictor.predictor, predictor.config = _paddle_predictor(model_dir, threads)
    predictor.preprocess_ops = create_operators(config["PreProcess"]["transform_ops"])
    predictor.postprocess = build_postprocess(config["PostProcess"])
    predictor.benchmark = False
    image_list = get_image_list(folder)
    sink = io.StringIO()
    n = 0
    t = time.perf_counter()
    with contextlib.redirect_stdout(sink):
        batch_imgs, batch_names = [], []
        for idx, path in enumerate(image_list):
            img = cv2.imread(path)
            if img is not None:
                batch_imgs.append(img[:, :, ::-1])
                batch_names.append(os.path.basename(path))
            if len(batch_imgs) == batch or (idx + 1 == len(image_list) and batch_imgs):
                for name, r in zip(batch_names, predictor.predict(batch_imgs)):
                    scores = "[{}]".format(", ".join(f"{s:.2f}" for s in r["scores"]))
                    print(
                        f"{name}:\tclass id(s): {r['class_ids']}, score(s): {scores}, label_name(s): {r['label_names']}"
                    )
                    n += 1
                batch_imgs, batch_names = [], []
    return {"images": n, "seconds": time.perf_counter() - t}


# ============================================================================ driver
class Worker:
    def __init__(self, label: str, cmd: list[str]) -> None:
        self.label = label
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = self._read()
        self.engine = ready.get("engine", label)

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.label} died (exit code {self.proc.wait()})")
        return json.loads(line)

    def ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        try:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait(timeout=60)


def make_folder(n: int, root: Path) -> Path:
    """``n`` JPEGs of ImageNet-like sizes (~500x375, quality 90) cut from scikit-image/scikit-learn photos."""
    import numpy as np
    import skimage.data
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.astronaut(), skimage.data.rocket()]
    photos += list(load_sample_images().images)
    rng = np.random.default_rng(0)
    folder = root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        src = photos[i % len(photos)]
        h, w = src.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
        top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = Image.fromarray(src[top : top + ch, left : left + cw])
        size = (500, 375) if rng.random() < 0.7 else (375, 500)
        crop.resize(size, Image.BILINEAR).save(folder / f"img_{i:04d}.jpg", quality=90)
    return folder


def _auto_label(args) -> str:
    if args.weights:
        return "auto"
    from res2net.engines import auto_candidates

    e, p = auto_candidates("cpu")[0]
    return f"{e}:{p}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="Res2Net50_vd_26w_4s")
    ap.add_argument("--weights", default=None, help="real weights (enables auto's accuracy check)")
    ap.add_argument(
        "--engines", nargs="+", default=DEFAULT_ENGINES, help="engine:precision[:nosplit] or auto (nosplit: openvino)"
    )
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4, 8])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=5, help="timed runs per round (after 2 warm-ups)")
    ap.add_argument("--settle", type=float, default=0.5, help="seconds of idle before each worker's turn")
    ap.add_argument("--paddle-python", default=str(ROOT / ".venv-paddle" / "bin" / "python"))
    ap.add_argument("--no-paddle", action="store_true")
    ap.add_argument("--no-e2e", action="store_true")
    ap.add_argument("--e2e-images", type=int, default=96)
    ap.add_argument(
        "--e2e-batch", type=int, default=8, help="our batch size end to end (Paddle: 1 as its yaml, and this)"
    )
    ap.add_argument("--json", default=None, help="also write the results here")
    # worker mode (internal)
    ap.add_argument("--worker", choices=("ours", "paddle"), help=argparse.SUPPRESS)
    ap.add_argument("--engine", help=argparse.SUPPRESS)
    ap.add_argument("--precision", help=argparse.SUPPRESS)
    ap.add_argument("--random-weights", help=argparse.SUPPRESS)
    ap.add_argument("--variant", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker == "ours":
        return worker_ours(args) or 0
    if args.worker == "paddle":
        return worker_paddle(args) or 0

    tmp = Path(tempfile.mkdtemp(prefix="r2n_bench_"))
    random_weights = None
    if not args.weights:
        import torch
        from safetensors.torch import save_file

        import res2net

        torch.manual_seed(0)
        m = res2net.create_model(args.model).eval()
        random_weights = tmp / "random.safetensors"
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(random_weights))

    me = [sys.executable, str(Path(__file__).resolve())]
    common = ["--model", args.model, "--threads", str(args.threads)]
    workers: list[Worker] = []
    if not args.no_paddle:
        if not Path(args.paddle_python).exists():
            print(f"no Paddle environment at {args.paddle_python}; run scripts/setup.sh or pass --no-paddle")
            return 2
        workers.append(Worker("paddle", [args.paddle_python, *me[1:], "--worker", "paddle", *common]))
    for spec in args.engines:
        label = spec if spec != "auto" else f"auto ({_auto_label(args)})"
        engine, _, rest = (_auto_label(args) if spec == "auto" else spec).partition(":")
        precision, _, variant = rest.partition(":")
        cmd = [*me, "--worker", "ours", "--engine", engine, *common]
        cmd += ["--precision", precision] if precision else []
        cmd += ["--variant", variant] if variant else []
        cmd += ["--weights", args.weights] if args.weights else ["--random-weights", str(random_weights)]
        print(f"starting {label} ...", file=sys.stderr, flush=True)
        workers.append(Worker(label, cmd))

    results: dict = {
        "machine": _machine(),
        "threads": args.threads,
        "model": args.model,
        "latency_ms": {},
        "latency_min_ms": {},
        "e2e": {},
    }
    try:
        for bs in args.batch_sizes:
            times: dict[str, list[float]] = {w.label: [] for w in workers}
            for r in range(args.rounds):
                for w in workers if r % 2 == 0 else workers[::-1]:
                    time.sleep(args.settle)  # let the previous worker's spinning OpenMP threads go idle
                    times[w.label] += w.ask(cmd="latency", batch=bs, iters=args.iters, warmup=2)["times"]
            for w in workers:
                results["latency_ms"].setdefault(w.label, {})[bs] = round(1e3 * statistics.median(times[w.label]), 1)
                results["latency_min_ms"].setdefault(w.label, {})[bs] = round(1e3 * min(times[w.label]), 1)
            print(
                f"batch {bs}: "
                + ", ".join(
                    f"{k} {v[bs]} ms (min {results['latency_min_ms'][k][bs]})" for k, v in results["latency_ms"].items()
                ),
                flush=True,
            )
        if not args.no_e2e:
            folder = make_folder(args.e2e_images, tmp)
            for w in workers:
                batches = [1, args.e2e_batch] if w.label == "paddle" else [args.e2e_batch]
                for b in batches:
                    w.ask(cmd="e2e", dir=str(folder), batch=b)  # warm-up pass (page cache, compiled shapes)
                    rep = w.ask(cmd="e2e", dir=str(folder), batch=b)
                    results["e2e"][f"{w.label} (batch {b})"] = round(rep["images"] / rep["seconds"], 2)
            print("end to end: " + ", ".join(f"{k} {v} img/s" for k, v in results["e2e"].items()), flush=True)
    finally:
        for w in workers:
            w.close()
    results["engines"] = {w.label: w.engine for w in workers}
    print()
    print(_table(results, args.batch_sizes))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def _table(results: dict, batch_sizes: list[int]) -> str:
    rows = []
    for key, title in (("latency_ms", "median"), ("latency_min_ms", "min")):
        lat = results[key]
        base = lat.get("paddle")
        head = f"| engine ({title}) | " + " | ".join(f"bs{b} ms" for b in batch_sizes)
        head += (" | " + " | ".join(f"bs{b} vs Paddle" for b in batch_sizes)) if base else ""
        rows += [head + " |", "|" + "---|" * (1 + len(batch_sizes) * (2 if base else 1))]
        for label, row in lat.items():
            cells = [f"{row[b]:.1f}" for b in batch_sizes]
            if base:
                cells += [f"{row[b] / base[b]:.2f}x" for b in batch_sizes]
            rows.append(f"| {label} | " + " | ".join(cells) + " |")
        rows.append("")
    if results["e2e"]:
        rows += ["| end to end (JPEG -> top-5) | images/s |", "|---|---|"]
        rows += [f"| {k} | {v} |" for k, v in results["e2e"].items()]
    rows += ["", f"machine: {results['machine']}, {results['threads']} threads, model {results['model']}"]
    return "\n".join(rows)


def _machine() -> str:
    import platform

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs"


if __name__ == "__main__":
    sys.exit(main())
