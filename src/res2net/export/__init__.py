"""Export a Res2Net for deployment: ONNX, OpenVINO IR, ``torch.export``/AOTInductor ``.pt2``,
TorchScript and Triton model repositories — and verify each against PyTorch eager on real images.

Every format computes the same function (see :mod:`res2net.export._common`): input ``input``
``[N, 3, H, W]`` float32, already normalised; output ``logits`` or, with ``softmax=True``,
``probabilities`` ``[N, num_classes]``.
"""

from __future__ import annotations

from res2net.export._common import INPUT_NAME, LOGITS_NAME, PROBS_NAME, ExportError, InferenceModel
from res2net.export.onnx import export_onnx
from res2net.export.openvino import export_openvino

__all__ = [
    "INPUT_NAME",
    "LOGITS_NAME",
    "PROBS_NAME",
    "ExportError",
    "InferenceModel",
    "export_onnx",
    "export_openvino",
]
