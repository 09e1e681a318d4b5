"""Class names: a label file (one name per line, or PaddleClas's ``id name`` lines) or ImageNet-1k's.

In the data layer because both the Predictor (what it prints) and the exporters (what a package
records for the C++ predictor) need the same names.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from res2net.errors import Res2NetError


def load_labels(path: str | Path | None = None) -> list[str]:
    """Class names, one per line; ``"<id> <name>"`` lines (PaddleClas's format) are accepted.

    ``None`` gives the ImageNet-1k names PaddleClas prints (``res2net/assets/imagenet1k_label_list.txt``).
    """
    if path is None:
        text = (resources.files("res2net") / "assets" / "imagenet1k_label_list.txt").read_text()
        source = "imagenet1k_label_list.txt"
    else:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise Res2NetError(f"{path}: cannot read the label file ({e.strerror})") from None
        source = str(path)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    parts = [line.split(maxsplit=1) for line in lines]
    if parts and all(len(p) == 2 and p[0].isdigit() for p in parts):
        ids = [int(p[0]) for p in parts]
        if ids != list(range(len(ids))):
            raise Res2NetError(f"{source}: class ids must run 0..{len(ids) - 1} in order")
        return [p[1] for p in parts]
    return lines
