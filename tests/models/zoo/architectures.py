"""Small, faithful plain-torch versions of the architectures users bring (issue 14).

Each keeps the structure that matters to an exporter and to the twin (residual additions,
downsample branches, ``torch.cat`` of a list, adaptive pooling at a size that is not a multiple
of the output, squeeze-and-excitation, LayerNorm on channels-last tensors, GELU, depthwise 7×7,
attention through ``nn.MultiheadAttention`` and written by hand, weight standardisation,
GroupNorm, interpolation) at narrow widths and 32×32 inputs, and the module paths of the
originals (``layer1.0.conv1``, ``features.denseblock1``, ``blocks.0.attn``), since users name
layers by them. Weights are random but seeded; every normalisation gets non-trivial statistics
and affine parameters (``make``) so that folding a BatchNorm into a convolution, or dropping
one, changes the outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

SIZE = 32
CLASSES = 3


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: Callable[[], nn.Module] | None = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


# --- ResNet (He et al. 2016), torchvision's layout ------------------------------------------


def downsample(cin: int, cout: int, stride: int) -> nn.Module | None:
    """The shortcut's 1×1 convolution and BatchNorm where the block changes the shape."""
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = downsample(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, block: type[nn.Module], widths: tuple[int, int, int], expansion: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 8
        for i, width in enumerate(widths, 1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(block(cin, width, stride), block(width * expansion, width)))
            cin = width * expansion
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet_basic() -> nn.Module:
    return ResNet(BasicBlock, (8, 16, 24))


def resnet_bottleneck() -> nn.Module:
    return ResNet(Bottleneck, (4, 8, 8), expansion=4)


# --- DenseNet (Huang et al. 2017): each layer reads torch.cat of the list of earlier outputs --


class DenseLayer(nn.Module):
    """BN-ReLU-Conv1×1 (``bottleneck`` × growth channels), BN-ReLU-Conv3×3 (growth); DenseNet-121 has a bottleneck of 4."""

    def __init__(self, cin: int, growth: int, bottleneck: int = 2) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, bottleneck * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bottleneck * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bottleneck * growth, growth, 3, 1, 1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(features, 1)
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class DenseBlock(nn.ModuleDict):
    def __init__(self, layers: int, cin: int, growth: int, bottleneck: int = 2) -> None:
        super().__init__({f"denselayer{i + 1}": DenseLayer(cin + i * growth, growth, bottleneck) for i in range(layers)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class DenseNet(nn.Module):
    def __init__(self, growth: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(3, 8, 3, 1, 1, bias=False))
        self.features.add_module("norm0", nn.BatchNorm2d(8))
        self.features.add_module("relu0", nn.ReLU(inplace=True))
        self.features.add_module("denseblock1", DenseBlock(3, 8, growth))
        self.features.add_module("transition1", nn.Sequential(nn.BatchNorm2d(20), nn.ReLU(inplace=True), nn.Conv2d(20, 10, 1, bias=False), nn.AvgPool2d(2)))
        self.features.add_module("denseblock2", DenseBlock(2, 10, growth))
        self.features.add_module("norm5", nn.BatchNorm2d(18))
        self.classifier = nn.Linear(18, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.features(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))


def densenet() -> nn.Module:
    return DenseNet()


# --- VGG (Simonyan & Zisserman 2015): AdaptiveAvgPool2d((7, 7)) of an 8×8 map ----------------


class VGG(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(nn.Linear(16 * 7 * 7, 32), nn.ReLU(inplace=True), nn.Dropout(), nn.Linear(32, CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def vgg() -> nn.Module:
    return VGG()


# --- MobileNet v2 (Sandler et al. 2018) and v3 (Howard et al. 2019) ---------------------------


class SqueezeExcitation(nn.Module):
    """torchvision's: global average pool, 1×1 convolutions, scale (Hu et al. 2018)."""

    def __init__(self, channels: int, squeeze: int, activation: type[nn.Module], gate: type[nn.Module]) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = activation()
        self.scale_activation = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


class InvertedResidual(nn.Module):
    """Expand 1×1, depthwise k×k, (squeeze-excite), project 1×1; residual when shapes agree."""

    def __init__(self, cin: int, expanded: int, cout: int, kernel: int, stride: int, act: type[nn.Module],
                 se: tuple[type[nn.Module], type[nn.Module]] | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(conv_bn(cin, expanded, 1, act=act))
        layers.append(conv_bn(expanded, expanded, kernel, stride, groups=expanded, act=act))
        if se is not None:
            layers.append(SqueezeExcitation(expanded, max(4, expanded // 4), *se))
        layers.append(conv_bn(expanded, cout, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_res_connect else y


class MobileNet(nn.Module):
    def __init__(self, blocks: list[nn.Module], stem: int, last: int, act: type[nn.Module], hidden: int | None) -> None:
        super().__init__()
        cin = blocks[-1].block[-1][0].out_channels
        self.features = nn.Sequential(conv_bn(3, stem, 3, 2, act=act), *blocks, conv_bn(cin, last, 1, act=act))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        head: list[nn.Module] = [nn.Dropout(0.2), nn.Linear(last, CLASSES)]
        if hidden is not None:
            head = [nn.Linear(last, hidden), act(), nn.Dropout(0.2), nn.Linear(hidden, CLASSES)]
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def mobilenet_v2() -> nn.Module:
    act = nn.ReLU6
    blocks = [InvertedResidual(8, 8, 8, 3, 1, act), InvertedResidual(8, 48, 12, 3, 2, act),
              InvertedResidual(12, 72, 12, 3, 1, act), InvertedResidual(12, 72, 16, 3, 2, act)]
    return MobileNet(blocks, 8, 64, act, None)


def mobilenet_v3() -> nn.Module:
    se = (nn.ReLU, nn.Hardsigmoid)
    blocks = [InvertedResidual(8, 8, 8, 3, 1, nn.ReLU, se), InvertedResidual(8, 32, 12, 3, 2, nn.ReLU),
              InvertedResidual(12, 48, 16, 5, 2, nn.Hardswish, se), InvertedResidual(16, 64, 16, 5, 1, nn.Hardswish, se)]
    return MobileNet(blocks, 8, 48, nn.Hardswish, 64)


def efficientnet() -> nn.Module:
    """MBConv blocks with SiLU and squeeze-excitation (SiLU, sigmoid gate), Tan & Le 2019."""
    se = (nn.SiLU, nn.Sigmoid)
    blocks = [InvertedResidual(8, 8, 8, 3, 1, nn.SiLU, se), InvertedResidual(8, 48, 12, 3, 2, nn.SiLU, se),
              InvertedResidual(12, 72, 12, 5, 1, nn.SiLU, se), InvertedResidual(12, 72, 20, 5, 2, nn.SiLU, se)]
    return MobileNet(blocks, 8, 64, nn.SiLU, None)


# --- ConvNeXt (Liu et al. 2022) -------------------------------------------------------------


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor (torchvision's: permute, normalise, permute)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class CNBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.layer_scale = nn.Parameter(torch.full((dim,), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + (self.layer_scale * y).permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    def __init__(self, dims: tuple[int, ...] = (16, 32), depths: tuple[int, ...] = (2, 2), stem: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, dims[0], stem, stem), LayerNorm2d(dims[0], eps=1e-6))]
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            if i:
                layers.append(nn.Sequential(LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], dim, 2, 2)))
            layers.append(nn.Sequential(*[CNBlock(dim) for _ in range(depth)]))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(LayerNorm2d(dims[-1], eps=1e-6), nn.Flatten(1), nn.Linear(dims[-1], CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)))


def convnext() -> nn.Module:
    return ConvNeXt()


# --- Vision transformer (Dosovitskiy et al. 2021) ----------------------------------------------


class Attention(nn.Module):
    """Multi-head self-attention written out (timm's): one qkv projection, softmax(q·kᵀ/√d)·v."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class TorchAttention(nn.Module):
    """nn.MultiheadAttention as torchvision's ViT calls it (query = key = value, no weights out)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x, need_weights=False)[0]


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, attention: type[nn.Module], mlp: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp * dim), nn.GELU(), nn.Linear(mlp * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    def __init__(self, attention: type[nn.Module], image: int = SIZE, patch: int = 8, dim: int = 32, depth: int = 2, heads: int = 4,
                 mlp: int = 2) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads, attention, mlp) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def vit_mha() -> nn.Module:
    return VisionTransformer(TorchAttention)


def vit_hand() -> nn.Module:
    return VisionTransformer(Attention)


# --- Inception-style branches (Szegedy et al. 2015) -------------------------------------------


class InceptionBlock(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch1x1 = conv_bn(cin, 8, 1)
        self.branch3x3 = nn.Sequential(conv_bn(cin, 6, 1), conv_bn(6, 8, 3))
        self.branch5x5 = nn.Sequential(conv_bn(cin, 4, 1), conv_bn(4, 6, 5))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv_bn(cin, 6, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self.branch3x3(x), self.branch5x5(x), self.branch_pool(x)], 1)


class Inception(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 16, 3, 2), nn.MaxPool2d(2))
        self.mixed = nn.Sequential(InceptionBlock(16), InceptionBlock(28))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(28, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.mixed(self.stem(x))), 1))


def inception() -> nn.Module:
    return Inception()


# --- GroupNorm, weight standardisation (BiT), upsampling, multi-label --------------------------


def groupnorm() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, 1, 1), nn.GroupNorm(4, 16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, 2, 1), nn.GroupNorm(8, 32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, CLASSES),
    )


class StdConv2d(nn.Conv2d):
    """Weight-standardised convolution as timm writes it for BiT (Kolesnikov et al. 2020): the
    weight normalised per output channel by ``F.batch_norm(training=True)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, training=True, momentum=0.0, eps=1e-6)
        return F.conv2d(x, weight.reshape_as(self.weight), self.bias, self.stride, self.padding, self.dilation, self.groups)


def bit() -> nn.Module:
    return nn.Sequential(
        StdConv2d(3, 16, 3, 1, 1, bias=False), nn.GroupNorm(4, 16), nn.ReLU(),
        StdConv2d(16, 32, 3, 2, 1, bias=False), nn.GroupNorm(8, 32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, CLASSES),
    )


class Upsampling(nn.Module):
    """A feature-pyramid step: the coarse map upsampled (bilinear and nearest) onto the fine one."""

    def __init__(self) -> None:
        super().__init__()
        self.fine = conv_bn(3, 8, 3, 2)
        self.coarse = conv_bn(8, 8, 3, 2)
        self.smooth = conv_bn(8, 16, 3)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fine = self.fine(x)
        coarse = self.coarse(fine)
        merged = fine + F.interpolate(coarse, scale_factor=2.0, mode="bilinear", align_corners=False)
        merged = merged + F.interpolate(coarse, size=fine.shape[-2:], mode="nearest")
        return self.fc(torch.flatten(self.avgpool(self.smooth(merged)), 1))


def upsampling() -> nn.Module:
    return Upsampling()


def multilabel() -> nn.Module:
    """A CNN whose 5 outputs are independent labels (audited with ``--multilabel``: sigmoid)."""
    return nn.Sequential(conv_bn(3, 8, 3), conv_bn(8, 16, 3, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))


@dataclass(frozen=True)
class Architecture:
    """How to build one zoo model and audit it: ``cam_layer`` is the Grad-CAM layer a user
    names (module path) where the default (the input of the head's global pooling) does not
    exist; ``multilabel`` audits with ``--multilabel``."""

    build: Callable[[], nn.Module]
    cam_layer: str | None = None
    multilabel: bool = False


ARCHITECTURES: dict[str, Architecture] = {
    "resnet_basic": Architecture(resnet_basic),
    "resnet_bottleneck": Architecture(resnet_bottleneck),
    "densenet": Architecture(densenet),
    "vgg": Architecture(vgg, cam_layer="features.10"),
    "mobilenet_v2": Architecture(mobilenet_v2),
    "mobilenet_v3": Architecture(mobilenet_v3),
    "efficientnet": Architecture(efficientnet),
    "convnext": Architecture(convnext),
    "vit_mha": Architecture(vit_mha, cam_layer="blocks.1"),
    "vit_hand": Architecture(vit_hand, cam_layer="blocks.1"),
    "inception": Architecture(inception),
    "groupnorm": Architecture(groupnorm),
    "bit": Architecture(bit),
    "upsampling": Architecture(upsampling),
    "multilabel": Architecture(multilabel, multilabel=True),
}


LOGIT_SCALE = 20.0


def make(name: str) -> nn.Module:
    """The seeded model in eval mode. Normalisation layers get statistics and affine parameters
    away from the identity (BatchNorm: running mean in ±0.5, variance in [0.5, 2]; every
    weight in [0.5, 1.5], bias in ±0.2), as training would leave them, and the head (the last
    ``nn.Linear``) is scaled so that the largest logit on seeded noise is ±``LOGIT_SCALE``, the
    size of a trained classifier's logits (random weights give ±1, where an absolute tolerance
    on the twin's logits would never be tested)."""
    torch.manual_seed(0)
    model = ARCHITECTURES[name].build()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.rand(module.num_features, generator=generator) - 0.5)
                module.running_var.copy_(0.5 + 1.5 * torch.rand(module.num_features, generator=generator))
            if isinstance(module, (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)) and module.weight is not None:
                module.weight.copy_(0.5 + torch.rand(module.weight.shape, generator=generator))
                module.bias.copy_(0.4 * torch.rand(module.bias.shape, generator=generator) - 0.2)
        head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        scale = LOGIT_SCALE / model.eval()(torch.rand((4, 3, SIZE, SIZE), generator=generator)).abs().max()
        head.weight.mul_(scale)
        head.bias.mul_(scale)
    return model.eval()
