"""The library's error base: the CLI prints these as one clear line instead of a traceback."""


class Res2NetError(Exception):
    """A problem with the user's input or environment (bad file, unknown model, no network)."""


# The optional dependency groups of pyproject.toml, by the top-level module a feature imports.
EXTRA_OF_MODULE = {
    "onnx": "deploy",
    "onnxscript": "deploy",
    "onnxruntime": "deploy",
    "openvino": "deploy",
    "nncf": "deploy",
    "fastapi": "serve",
    "uvicorn": "serve",
    "httptools": "serve",
    "multipart": "serve",
    "python_multipart": "serve",
    "prometheus_client": "serve",
    "grpc": "serve",
    "google": "serve",
    "executorch": "edge",
    "tensorboard": "train",
    "sklearn": "train",
    "matplotlib": "plot",
    "huggingface_hub": "hf",
    "timm": "timm",
}


class MissingExtraError(Res2NetError, ImportError):
    """An optional dependency is not installed; the message names the ``pip install`` that adds it."""

    def __init__(self, module: str, feature: str | None = None) -> None:
        top = module.split(".")[0]
        extra = EXTRA_OF_MODULE.get(top)
        fix = f"pip install 'res2net[{extra}]'" if extra else f"pip install {top}"
        what = feature or "this command"
        super().__init__(f"{what} needs the {top!r} package, which is not installed: {fix}")
        self.module = top
        self.extra = extra


def require(module: str, feature: str) -> object:
    """Import ``module`` or raise :class:`MissingExtraError` saying which extra provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise MissingExtraError(e.name or module, feature) from None
