"""torch.hub entry points: ``torch.hub.load("<owner>/res2net", "Res2Net50_vd_26w_4s_ssld", pretrained=True)``.

Every registered model name (``res2net.list_models()``) is an entry point taking
``res2net.create_model``'s arguments (``pretrained``, ``num_classes``, ``features_only`` ...).
The repository's own ``src/`` is put first on ``sys.path``, so the code that runs is the code of
the revision torch.hub fetched, not some other installed version.
"""

import sys
from pathlib import Path

dependencies = ["torch", "torchvision", "numpy", "safetensors", "PIL", "cv2", "yaml", "tqdm"]

_SRC = str(Path(__file__).resolve().parent / "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)

import res2net  # noqa: E402


def _entry(name):
    def entry(pretrained=False, **kwargs):
        return res2net.create_model(name, pretrained=pretrained, **kwargs)

    card = res2net.get_card(name)
    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"{card.description}. Arguments: those of res2net.create_model (pretrained, num_classes, ...)."
    return entry


for _name in res2net.list_models():
    for _alias in (_name, *res2net.get_card(_name).aliases):
        globals()[_alias] = _entry(_name)
del _name, _alias
