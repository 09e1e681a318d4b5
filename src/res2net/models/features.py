"""timm's feature-map conventions, without requiring timm: ``FeatureInfo`` and tap-index selection.

timm's detection/segmentation users read ``model.feature_info.channels()`` / ``.reduction()`` /
``.module_name()`` and select taps with ``indices`` as ``forward_intermediates`` does
(``timm/models/_features.py`` in timm's repository); these behave the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def take_indices(num_features: int, indices: int | Sequence[int] | None) -> tuple[list[int], int]:
    """Absolute tap indices and the largest one: ``None`` = all, an int ``n`` = the last ``n``,
    a sequence = those indices (negative ones count from the end)."""
    if indices is None:
        indices = num_features
    if isinstance(indices, int):
        if not 0 < indices <= num_features:
            raise ValueError(f"last-n indices={indices} is out of range (1 to {num_features})")
        take = list(range(num_features - indices, num_features))
    else:
        take = []
        for i in indices:
            idx = num_features + i if i < 0 else i
            if not 0 <= idx < num_features:
                raise ValueError(f"feature index {i} is out of range (0 to {num_features - 1})")
            take.append(idx)
        if not take:
            raise ValueError("indices must not be empty")
    return take, max(take)


class FeatureInfo:
    """Per-tap ``num_chs`` / ``reduction`` / ``module`` of a backbone, restricted to ``out_indices``.

    Accessors with ``idx=None`` answer for the selected taps; an int or list answers for those
    absolute tap indices, as timm's ``FeatureInfo`` does.
    """

    def __init__(self, info: list[dict[str, Any]], out_indices: Sequence[int]) -> None:
        self.info = [dict(d, index=i) for i, d in enumerate(info)]
        self.out_indices = tuple(out_indices)

    def from_other(self, out_indices: Sequence[int]) -> FeatureInfo:
        return FeatureInfo(self.info, out_indices)

    def get(self, key: str, idx: int | Sequence[int] | None = None) -> Any:
        if idx is None:
            return [self.info[i][key] for i in self.out_indices]
        if isinstance(idx, (list, tuple)):
            return [self.info[i][key] for i in idx]
        return self.info[idx][key]

    def get_dicts(self, keys: Sequence[str] | None = None, idx: int | Sequence[int] | None = None) -> Any:
        def pick(i: int) -> dict[str, Any]:
            return self.info[i] if keys is None else {k: self.info[i][k] for k in keys}

        if idx is None:
            return [pick(i) for i in self.out_indices]
        if isinstance(idx, (list, tuple)):
            return [pick(i) for i in idx]
        return pick(idx)

    def channels(self, idx: int | Sequence[int] | None = None) -> Any:
        return self.get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> Any:
        return self.get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> Any:
        return self.get("module", idx)

    def __getitem__(self, item: int) -> dict[str, Any]:
        return self.info[item]

    def __len__(self) -> int:
        return len(self.info)

    def __repr__(self) -> str:
        return f"FeatureInfo(out_indices={self.out_indices}, channels={self.channels()}, reduction={self.reduction()})"
