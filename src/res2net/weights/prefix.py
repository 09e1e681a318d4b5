"""PaddleClas-style weight prefixes: ``output/Res2Net50_vd_26w_4s/latest`` -> the file we wrote.

PaddleClas passes checkpoints as path prefixes (``Global.pretrained_model=output/NAME/best_model``)
and appends ``.pdparams``; its trainer writes ``latest``, ``best_model`` and ``epoch_N``. Ours
writes ``last`` / ``best`` as ``.safetensors`` (and ``last.pt`` for resuming). A prefix resolves
to whichever of those exists, answering to both vocabularies, so a PaddleClas user's command works
on our output folders and ours on theirs.
"""

from __future__ import annotations

from pathlib import Path

from res2net.weights.raw import WeightsError

# Tried in this order: the file formats a weights prefix may stand for (safetensors before a
# full last.pt training checkpoint, whose weights are also in last.safetensors).
SUFFIXES = (".pdparams", ".safetensors", ".pth", ".pt")
# PaddleClas's checkpoint names and ours, each answering for the other.
SYNONYMS = {"latest": ("latest", "last"), "last": ("last", "latest"), "best_model": ("best_model", "best"),
            "best": ("best", "best_model")}  # fmt: skip


def resolve_weights_prefix(path: str | Path) -> Path:
    """``path`` itself when it is a file; otherwise the first existing file it is a prefix of.

    A ``.pdparams`` that does not exist counts as a prefix too (PaddleClas configs, and our
    translation of them, append that suffix). Raises :class:`WeightsError` listing what was tried.
    """
    path = Path(path)
    if path.is_file():
        return path
    prefix = path.with_suffix("") if path.suffix == ".pdparams" else path
    if prefix.suffix and prefix.suffix in SUFFIXES:  # an explicit file name that is not there
        raise WeightsError(f"{path}: no such weights file")
    stems = SYNONYMS.get(prefix.name, (prefix.name,))
    tried = [prefix.with_name(stem + suffix) for stem in stems for suffix in SUFFIXES]
    for candidate in tried:
        if candidate.is_file():
            return candidate
    folder = prefix.parent
    present = sorted(p.name for p in folder.iterdir() if p.suffix in SUFFIXES) if folder.is_dir() else []
    hint = f"; {folder} has: {', '.join(present)}" if present else f"; {folder} has no weights files"
    if prefix.name.startswith("epoch_") and not present:
        hint += " (res2net train writes last/best, not PaddleClas's per-epoch epoch_N files)"
    raise WeightsError(f"{path}: no such weights file (tried {', '.join(p.name for p in tried)}){hint}")
