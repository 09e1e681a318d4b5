"""Knowledge distillation the way PaddleClas made the ``_ssld`` weights (paddleclas.md §4.2).

SSLD ("simple semi-supervised label distillation") trains a student against a frozen teacher with the
**Jensen-Shannon divergence** between their softmax outputs — no ground-truth label needed, so extra
*unlabeled* images (labelled only by the teacher) can be added to the training set. We also offer the
classic Hinton KL loss with a temperature, and mixing in the label loss on labeled images:

    loss = distill_weight * D(student, teacher) + label_weight * CE(student, labels)

Config (``Distillation`` section)::

    Distillation:
      enabled: true
      teacher: Res2Net200_vd_26w_4s_ssld   # any create_model name
      teacher_pretrained: true             # official weights, or a weights file
      loss: js                             # js | kl
      temperature: 1.0                     # kl only
      distill_weight: 1.0
      label_weight: 0.0
      unlabeled_root: /data/unlabeled      # optional: images only the teacher labels
"""

from __future__ import annotations

import math

import torch
from torch import nn

from res2net.data.augment import soft_cross_entropy
from res2net.factory import create_model
from res2net.training.config import ConfigError


def js_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``JS(p, q) = (KL(p || m) + KL(q || m)) / 2`` with ``m = (p + q) / 2``.

    Computed from log-probabilities (``log m = logsumexp(log p, log q) - log 2``), so it stays finite
    when probabilities underflow. Symmetric, 0 iff the distributions agree, at most ``log 2``.
    """
    logp = torch.log_softmax(student_logits.float(), dim=1)
    logq = torch.log_softmax(teacher_logits.float(), dim=1)
    logm = torch.logaddexp(logp, logq) - math.log(2.0)
    kl_pm = (logp.exp() * (logp - logm)).sum(1)
    kl_qm = (logq.exp() * (logq - logm)).sum(1)
    return (0.5 * (kl_pm + kl_qm)).mean()


def kl_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Hinton's ``T^2 * KL(softmax(t / T) || softmax(s / T))``, mean over the batch."""
    t = float(temperature)
    logp = torch.log_softmax(student_logits.float() / t, dim=1)
    logq = torch.log_softmax(teacher_logits.float() / t, dim=1)
    return (logq.exp() * (logq - logp)).sum(1).mean() * (t * t)


class DistillationLoss(nn.Module):
    """``distill_weight * D(student, teacher) + label_weight * CE(student, soft targets)``."""

    def __init__(
        self, kind: str = "js", temperature: float = 1.0, distill_weight: float = 1.0, label_weight: float = 0.0
    ) -> None:
        super().__init__()
        if kind not in ("js", "kl"):
            raise ValueError(f"distillation loss must be 'js' or 'kl', got {kind!r}")
        self.kind = kind
        self.temperature = temperature
        self.distill_weight = distill_weight
        self.label_weight = label_weight

    def forward(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.kind == "js":
            d = js_divergence(student_logits, teacher_logits)
        else:
            d = kl_divergence(student_logits, teacher_logits, self.temperature)
        loss = self.distill_weight * d
        if self.label_weight > 0 and targets is not None:
            loss = loss + self.label_weight * soft_cross_entropy(student_logits, targets)
        return loss


def build_teacher(section: dict, num_classes: int, device: torch.device, channels_last: bool) -> nn.Module:
    """The frozen teacher: ``create_model`` + weights, eval mode (BN uses its running statistics)."""
    n = section.get("teacher_num_classes") or num_classes
    if n != num_classes:
        raise ConfigError(
            f"Distillation.teacher_num_classes={n} differs from Arch.num_classes={num_classes}: "
            "teacher and student must predict the same classes"
        )
    pretrained = section.get("teacher_pretrained", True)
    if pretrained in (None, False, ""):
        raise ConfigError("Distillation.teacher_pretrained: a teacher needs weights (true or a file)")
    teacher = create_model(section["teacher"], pretrained=pretrained, num_classes=n)
    teacher.requires_grad_(False)
    teacher.eval()
    teacher.to(device)
    if channels_last:
        teacher.to(memory_format=torch.channels_last)
    return teacher
