"""Official weights: download once, verify, cache.

* Cache: ``$RES2NET_HOME/weights`` (default ``~/.cache/res2net/weights``).
* A download goes to ``<file>.part`` and is renamed only when complete, so a killed download never
  leaves a file that looks finished; a later call resumes the ``.part`` with an HTTP Range request.
* Integrity: the card's published sha256 when the source gives one; otherwise the digest of the
  first complete download is recorded in ``<file>.sha256`` and every later use is checked against it.
* ``RES2NET_MIRROR`` (or ``mirror=``) replaces the official host, for users behind firewalls.
* ``RES2NET_OFFLINE=1`` never touches the network. When weights cannot be had, the error names the
  URL, the cache path and the ``pretrained=PATH`` / ``--weights PATH`` alternative.
* timm's cards live on the Hugging Face Hub: with ``huggingface_hub`` installed (``res2net[hf]``)
  and no mirror set, they are fetched through it, into the cache timm shares, honouring
  ``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` and tokens. Without it, our downloader fetches the same URL.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from res2net._paths import res2net_home, sha256_file
from res2net.models.zoo import PADDLE_BASE_URL, TIMM_BASE_URL, ModelCard, get_card
from res2net.weights.raw import WeightsError

_CHUNK = 1 << 16
OFFICIAL_WEIGHTS = ("official", "pretrained")  # what --weights / weights= accept for "the released weights"


def is_official(weights: str) -> bool:
    """Whether a ``--weights`` value names the model's released weights rather than a file."""
    return weights.lower() in OFFICIAL_WEIGHTS


class WeightsUnavailableError(WeightsError):
    """Official weights could not be downloaded and are not cached."""


def weights_dir() -> Path:
    return res2net_home() / "weights"


def weights_url(card: ModelCard, mirror: str | None = None) -> str:
    if card.url is None:
        raise WeightsUnavailableError(
            f"{card.name} has no published weights; train it (res2net train) or pass pretrained=PATH"
        )
    mirror = mirror if mirror is not None else os.environ.get("RES2NET_MIRROR")
    if not mirror:
        return card.url
    for base in (PADDLE_BASE_URL, TIMM_BASE_URL):
        if card.url.startswith(base):
            return mirror.rstrip("/") + "/" + card.url[len(base) :]
    return card.url


def cache_filename(card: ModelCard) -> str:
    if card.weights_origin == "timm":
        return f"{card.name}.in1k.safetensors"  # every timm file is called model.safetensors
    return card.url.rsplit("/", 1)[-1]


def _verify(path: Path, card: ModelCard) -> None:
    digest_file = path.with_name(path.name + ".sha256")
    expected = card.sha256 or (digest_file.read_text().split()[0] if digest_file.exists() else None)
    actual = sha256_file(path)
    if expected is None:
        digest_file.write_text(f"{actual}  {path.name}\n")
        return
    if actual != expected:
        bad = path.with_name(path.name + ".corrupt")
        path.replace(bad)
        raise WeightsError(
            f"{path}: sha256 {actual} does not match the expected {expected}; moved it to {bad}. "
            "Run again to download a fresh copy."
        )


def _download(url: str, dest: Path, progress: bool, timeout: float) -> None:
    from tqdm.auto import tqdm

    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "res2net"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        if offset and resp.status != 206:  # server ignored the Range header: start over
            offset = 0
        total = resp.headers.get("Content-Length")
        total = int(total) + offset if total is not None else None
        with (
            open(part, "ab" if offset else "wb") as f,
            tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar,
        ):
            while chunk := resp.read(_CHUNK):
                f.write(chunk)
                bar.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
    if total is not None and part.stat().st_size != total:
        raise urllib.error.URLError(f"connection closed after {part.stat().st_size} of {total} bytes")
    os.replace(part, dest)


def download_weights(
    name: str, *, mirror: str | None = None, progress: bool = True, timeout: float = 30.0, force: bool = False
) -> Path:
    """Path of the cached official weights of ``name``, downloading and verifying them if needed."""
    card = get_card(name)
    if card.hf_hub_id and not (mirror or os.environ.get("RES2NET_MIRROR")) and _has_hf_hub():
        from res2net.weights.hf import WEIGHTS_NAME, hf_download

        return hf_download(card.hf_hub_id, WEIGHTS_NAME, local_files_only=_offline())
    url = weights_url(card, mirror)
    dest = weights_dir() / cache_filename(card)
    if force and dest.exists():
        dest.unlink()
    if not dest.exists():
        if _offline():
            raise WeightsUnavailableError(_unavailable(card, url, dest, "RES2NET_OFFLINE is set"))
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            _download(url, dest, progress, timeout)
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            reason = getattr(e, "reason", e)
            raise WeightsUnavailableError(_unavailable(card, url, dest, str(reason))) from None
    _verify(dest, card)
    return dest


def _offline() -> bool:
    return os.environ.get("RES2NET_OFFLINE", "") not in ("", "0")


def _has_hf_hub() -> bool:
    import importlib.util

    return importlib.util.find_spec("huggingface_hub") is not None


def _unavailable(card: ModelCard, url: str, dest: Path, reason: str) -> str:
    return (
        f"cannot get the weights of {card.name}: {reason}.\n"
        f"  URL:   {url}\n"
        f"  cache: {dest}\n"
        f"Download the file yourself and place it at the cache path, or pass it directly with "
        f"pretrained=PATH (CLI: --weights PATH). Set RES2NET_MIRROR to use another host."
    )
