"""PaddleServing's pipeline protocol, as PaddleClas's clients speak it: ``POST /imagenet/prediction``.

Request ``{"key": ["image", ...], "value": ["<base64 image>", ...]}``; answer ``{"err_no", "err_msg",
"key": ["label", "prob"], "value": [str(labels), str(probs)], "tensors": []}`` with each image's top-1
as stringified lists, plus ``results`` (the full top-k per image), which Paddle's clients ignore.
"""

from __future__ import annotations

import base64
import binascii

from res2net.serve.errors import BadRequest
from res2net.serve.oip import parse_json

ROUTE_OP = "imagenet"  # PaddleClas's pipeline op name: its clients POST /imagenet/prediction


def parse_paddle_request(body: bytes) -> tuple[list[str], list[bytes]]:
    """A request body -> (keys, decoded images); anything malformed is the client's :class:`BadRequest`."""
    doc = parse_json(body, "body")
    keys, values = (doc.get("key"), doc.get("value")) if isinstance(doc, dict) else (None, None)
    if not isinstance(keys, list) or not isinstance(values, list) or len(keys) != len(values) or not values:
        raise BadRequest('expected {"key": ["image", ...], "value": ["<base64 image>", ...]} of equal length')
    # keys name the images in results and errors; only scalars are used as given (str() of a deeply
    # nested list would itself recurse too deep)
    names = [str(k) if isinstance(k, (str, int, float)) else type(k).__name__ for k in keys]
    images = []
    for name, value in zip(names, values):
        try:
            images.append(base64.b64decode(value, validate=True) if isinstance(value, str) else None)
        except (binascii.Error, ValueError):
            images.append(None)
        if images[-1] is None:
            raise BadRequest(f"value for key {name[:60]!r} is not a base64 string")
    return names, images


def paddle_response(keys: list[str], results: list) -> dict:
    """Paddle Serving's answer for classified images (``results``: :class:`~res2net.serve.service.Classification`)."""
    labels = [r.label_names[0] for r in results]
    probs = [round(r.scores[0], 5) for r in results]  # rounded as Predictor.predict / PaddleClas
    return {
        "err_no": 0,
        "err_msg": "",
        "key": ["label", "prob"],
        "value": [str(labels), str(probs)],
        "tensors": [],
        "results": [r.as_dict(key) for key, r in zip(keys, results)],
    }
