"""torchvision detection on our features_only backbone, as docs/ecosystem.md shows it."""

import torch
from torch import nn

import res2net
from res2net.models import freeze_batch_norm


def _fasterrcnn():
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import BackboneWithFPN

    body = res2net.create_model("res2net_tiny", features_only=True, frozen_bn=True)
    backbone = BackboneWithFPN(
        body,
        return_layers={name: str(i) for i, name in enumerate(body.feature_info.module_name())},
        in_channels_list=body.feature_info.channels(),
        out_channels=64,
    )
    return FasterRCNN(backbone, num_classes=3, min_size=128, max_size=128, rpn_batch_size_per_image=32)


def test_fasterrcnn_forward_and_training_step():
    torch.manual_seed(0)
    model = _fasterrcnn()
    images = [torch.rand(3, 128, 128), torch.rand(3, 96, 128)]
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, 70.0, 90.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[5.0, 5.0, 50.0, 60.0], [60.0, 30.0, 120.0, 90.0]]), "labels": torch.tensor([2, 1])},
    ]
    model.train()
    losses = model(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01)
    stem = model.backbone.body.conv1.weight.detach().clone()
    sum(losses.values()).backward()
    opt.step()
    assert not torch.equal(stem, model.backbone.body.conv1.weight)  # gradients reached our backbone
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2 and set(out[0]) == {"boxes", "labels", "scores"}


def test_frozen_bn_keeps_statistics_and_outputs():
    from torchvision.ops import FrozenBatchNorm2d

    model = res2net.create_model("res2net_tiny")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model.eval()(x)
    freeze_batch_norm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    model.train()  # frozen BN ignores train mode: batch statistics never enter
    with torch.no_grad():
        assert torch.allclose(model(x), ref, atol=1e-5)
