"""Export a Res2Net for deployment: ONNX, OpenVINO IR, ``torch.export``/AOTInductor ``.pt2``,
TorchScript and Triton model repositories — and verify each against PyTorch eager on real images.

Every format computes the same function (see :mod:`res2net.export._common`): input ``input``
``[N, 3, H, W]`` float32, already normalised; output ``logits`` or, with ``softmax=True``,
``probabilities`` ``[N, num_classes]``; metadata (model name, classes, preprocessing) inside.
Runtime packages (onnx, onnxruntime, openvino) are imported only by the function that needs them.
"""

from __future__ import annotations

from res2net.export._common import INPUT_NAME, LOGITS_NAME, PROBS_NAME, ExportError, InferenceModel
from res2net.export.onnx import export_onnx
from res2net.export.openvino import export_openvino
from res2net.export.pt2 import export_pt2, load_pt2
from res2net.export.torchscript import export_torchscript, load_torchscript
from res2net.export.triton import export_triton
from res2net.export.verify import VerifyReport, load_artifact, verify_export

__all__ = [
    "INPUT_NAME",
    "LOGITS_NAME",
    "PROBS_NAME",
    "ExportError",
    "InferenceModel",
    "VerifyReport",
    "export_onnx",
    "export_openvino",
    "export_pt2",
    "export_torchscript",
    "export_triton",
    "load_artifact",
    "load_pt2",
    "load_torchscript",
    "verify_export",
]
