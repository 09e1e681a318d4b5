"""The Paddle Inference anchor: PaddleClas's own deployment engine, timed in its own environment.

Runs *only* with the Paddle interpreter (``.venv-paddle/bin/python``): it imports paddle and
paddleclas, never torch or res2net. The parent (:mod:`res2net.benchmark.paddle_anchor`) starts it
as a subprocess and talks JSON lines over stdin/stdout, so Paddle and our engines can be timed
alternately in one benchmark run.

Setup (one ``{"cmd": "setup", ...}`` message): build the PaddleClas model (``ppcls`` backbone
constructors), load the weights the parent wrote as ``.npz`` under PaddleClas's structured keys
(the same weights as the PyTorch model under test), append ``Softmax`` as PaddleClas's
``tools/export_model.py`` does, ``paddle.jit.save`` the inference model, and create PaddleClas's
``deploy/python/predict_cls.py`` ``ClsPredictor`` from ``deploy/configs/inference_cls.yaml`` with
CPU overrides (``use_gpu False``, ``enable_mkldnn True`` — oneDNN, ``cpu_num_threads N``,
``ir_optim True``): exactly the predictor a PaddleClas user deploys. (One deviation, forced: with
Paddle 3.3's PIR programs ``enable_memory_optim`` breaks ``create_predictor``, so it is dropped when
it does; ``FLAGS_enable_pir_api=0`` in the environment saves a legacy ``.pdmodel`` instead — the
format of PaddleClas's released ``*_infer.tar`` models — with which the predictor runs unmodified.)

Commands after setup:

* ``time``: model-only latency as the seed measured it — a random ``[bs, 3, H, W]`` tensor,
  ``copy_from_cpu`` + ``run`` + ``copy_to_cpu`` per iteration, ``perf_counter`` samples returned.
* ``e2e``: PaddleClas's ``predict_cls.py`` loop (``cv2.imread`` -> BGR->RGB -> batches ->
  ``ClsPredictor.predict``: preprocess, infer, Topk postprocess) over the given files; seconds per pass.
* ``run``: outputs for a given ``.npy`` input (the parent checks the weights really are the same).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("FLAGS_call_stack_level", "0")
PIR_FLAG = "FLAGS_enable_pir_api"  # Paddle's own (lowercase) flag name

# Protocol on the real stdout; anything Paddle prints (it does, from C++) goes to stderr.
_PROTO = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
sys.stdout = sys.stderr


def reply(**msg) -> None:
    _PROTO.write(json.dumps(msg) + "\n")
    _PROTO.flush()


def export_inference_model(spec: dict) -> Path:
    """PaddleClas's own model with our weights (checked key by key), saved as an inference program."""
    import numpy as np  # in the Paddle interpreter: this process never imports res2net's dependencies
    import paddle
    from paddle.static import InputSpec
    from paddleclas.ppcls.arch.backbone.model_zoo import res2net, res2net_vd

    name = spec["model"]
    ctor = getattr(res2net_vd, name, None) or getattr(res2net, name, None)
    if ctor is None:
        raise ValueError(f"PaddleClas has no model {name!r}")
    work = Path(spec["work_dir"])
    work.mkdir(parents=True, exist_ok=True)
    h, w = spec.get("input_size", [224, 224])
    with paddle.utils.unique_name.guard():
        model = ctor(class_num=spec["num_classes"])
    model.eval()
    arrays = dict(np.load(spec["weights"]))
    state = model.state_dict()
    missing = sorted(set(state) - set(arrays))
    unexpected = sorted(set(arrays) - set(state))
    if missing or unexpected:
        raise ValueError(f"weights do not fit PaddleClas {name}: missing {missing[:5]}, extra {unexpected[:5]}")
    for key, value in arrays.items():
        if tuple(state[key].shape) != value.shape:
            raise ValueError(f"{key}: shape {value.shape} vs PaddleClas {tuple(state[key].shape)}")
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in arrays.items()})
    exported = paddle.nn.Sequential(model, paddle.nn.Softmax(axis=-1)) if spec.get("softmax", True) else model
    exported.eval()
    infer_dir = work / "inference_model"
    paddle.jit.save(exported, str(infer_dir / "inference"), input_spec=[InputSpec([None, 3, h, w], "float32")])
    return infer_dir


def deploy_config(spec: dict, infer_dir: Path) -> dict:
    """PaddleClas's ``deploy/configs/inference_cls.yaml`` pointed at ``infer_dir``, with the spec's knobs."""
    from paddleclas.deploy.utils import config as ppconfig

    h, _ = spec.get("input_size", [224, 224])
    deploy = Path(ppconfig.__file__).resolve().parents[1]
    cfg = ppconfig.get_config(str(deploy / "configs" / "inference_cls.yaml"), show=False)
    g = cfg["Global"]
    g["inference_model_dir"] = str(infer_dir)
    g["use_gpu"] = False
    g["enable_mkldnn"] = bool(spec.get("mkldnn", True))
    g["cpu_num_threads"] = int(spec["threads"])
    g["ir_optim"] = True
    g["batch_size"] = 1
    g["benchmark"] = False
    ops = cfg["PreProcess"]["transform_ops"]
    ops[0]["ResizeImage"]["resize_short"] = int(spec.get("resize_short", 256))
    ops[1]["CropImage"]["size"] = int(h)
    topk = cfg["PostProcess"]["Topk"]
    topk["class_id_map_file"] = str(deploy.parent / "ppcls" / "utils" / "imagenet1k_label_list.txt")
    if spec["num_classes"] != 1000:
        topk["class_id_map_file"] = None
    cfg["PostProcess"].pop("SavePreLabel", None)
    return cfg


def create_cls_predictor(cfg: dict):
    """PaddleClas's ``ClsPredictor`` and whether memory optimisation stayed on."""
    from paddleclas.deploy.python.predict_cls import ClsPredictor

    try:
        return ClsPredictor(cfg), True
    except ValueError as e:
        # Paddle 3.3 + PIR programs: enable_memory_optim() makes create_predictor fail ("Not find
        # predictor_id 0 and pass_name memory_optimize_pass"); PaddleClas 2.6's predict_cls.py fails
        # the same way. Drop only that call (it reuses buffers, it does not change kernels).
        if "memory_optimize_pass" not in str(e):
            raise
        from paddle.inference import Config
        from paddleclas.deploy.utils import predictor as pp

        class NoMemoryOptimConfig(Config):
            def enable_memory_optim(self, *args, **kwargs) -> None:
                pass

        pp.Config = NoMemoryOptimConfig
        return ClsPredictor(cfg), False


class Anchor:
    def __init__(self, spec: dict) -> None:
        import numpy as np
        import paddle

        paddle.set_device("cpu")
        self.np = np
        h, w = spec.get("input_size", [224, 224])
        self.hw = (h, w)
        cfg = deploy_config(spec, export_inference_model(spec))
        g = cfg["Global"]
        self.cls, memory_optim = create_cls_predictor(cfg)
        self.predictor = self.cls.predictor
        self.input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self.output = self.predictor.get_output_handle(self.predictor.get_output_names()[0])
        self.info = {
            "paddle": paddle.__version__,
            "paddleclas_config": "deploy/configs/inference_cls.yaml",
            "mkldnn": g["enable_mkldnn"],
            "threads": g["cpu_num_threads"],
            "softmax": bool(spec.get("softmax", True)),
            "memory_optim": memory_optim,
            "program": "pdmodel" if os.environ.get(PIR_FLAG, "1") in ("0", "false") else "pir",
        }

    def _infer(self, x):
        self.input.reshape(list(x.shape))
        self.input.copy_from_cpu(x)
        self.predictor.run()
        return self.output.copy_to_cpu()

    def time(self, bs: int, n: int, warmup: int = 0) -> list[float]:
        x = self.np.random.RandomState(0).standard_normal((bs, 3, *self.hw)).astype("float32")
        for _ in range(warmup):
            self._infer(x)
        samples = []
        for _ in range(n):
            t = time.perf_counter()
            self._infer(x)
            samples.append(time.perf_counter() - t)
        return samples

    def e2e(self, files: list[str], bs: int, passes: int) -> list[float]:
        """predict_cls.main's loop (without its printing), timed per pass over ``files``."""
        import cv2

        seconds = []
        for _ in range(passes):
            t = time.perf_counter()
            batch = []
            for i, path in enumerate(files):
                img = cv2.imread(path)
                if img is not None:
                    batch.append(img[:, :, ::-1])
                if len(batch) == bs or (i + 1 == len(files) and batch):
                    results = self.cls.predict(batch)
                    assert len(results) == len(batch)
                    batch = []
            seconds.append(time.perf_counter() - t)
        return seconds

    def run(self, src: str, dst: str) -> None:
        x = self.np.load(src).astype("float32")
        self.np.save(dst, self._infer(x))


def main() -> int:
    anchor = None
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        cmd = msg.pop("cmd")
        try:
            if cmd == "setup":
                t = time.perf_counter()
                anchor = Anchor(msg)
                reply(ok=True, seconds=round(time.perf_counter() - t, 2), info=anchor.info)
            elif cmd == "time":
                reply(ok=True, samples=anchor.time(msg["bs"], msg["n"], msg.get("warmup", 0)))
            elif cmd == "e2e":
                reply(ok=True, seconds=anchor.e2e(msg["files"], msg["bs"], msg.get("passes", 1)))
            elif cmd == "run":
                anchor.run(msg["input"], msg["output"])
                reply(ok=True)
            elif cmd == "quit":
                reply(ok=True)
                return 0
            else:
                reply(ok=False, error=f"unknown command {cmd!r}")
        except Exception as e:  # report, keep serving: the parent decides
            reply(ok=False, error=f"{type(e).__name__}: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
