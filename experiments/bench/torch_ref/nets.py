"""Networks of the PyTorch peers, shaped like ``ssl_jax.models`` (parameter counts checked
by ``experiments/bench/peers.py``).

References:
  He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (ResNet); Goyal et
  al., "Accurate, Large Minibatch SGD", 2017 (zero-init residual gamma); Chen et al. 2020
  (SimCLR projector); Grill et al. 2020 (BYOL predictor); Caron et al. 2020 (SwAV
  prototypes).
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# ssl_jax BatchNorm: flax momentum 0.9 on the running average == torch momentum 0.1.
BN = dict(eps=1e-5, momentum=0.1)


def _kaiming(m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class BasicBlock(nn.Module):
    """``ssl_jax.models.resnet.ResidualBlock`` (basic): stride on the first 3x3 conv, a 1x1
    strided projection with BN when the shape changes, last BN zero-initialised."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout, **BN)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, **BN)
        nn.init.zeros_(self.bn2.weight)  # zero-init residual, as ssl_jax's ResNet
        self.proj = None
        if stride != 1 or cin != cout:
            self.proj = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, **BN)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.proj is None else self.proj(x)))


class ResNet18Cifar(nn.Module):
    """ResNet-18 with the CIFAR stem (3x3/1 conv, no max-pool), global-average-pooled."""

    num_features = 512

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64, **BN), nn.ReLU()
        )
        blocks, cin = [], 64
        for i, width in enumerate((64, 128, 256, 512)):
            for j in range(2):
                blocks.append(BasicBlock(cin, width, 2 if i > 0 and j == 0 else 1))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.apply(_kaiming)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x)).mean(dim=(2, 3))


class ConvNet(nn.Module):
    """``ssl_jax.models.ConvNet``: [3x3 conv, BN, ReLU, 2x2 max-pool] x 4 (no pool last)."""

    def __init__(self, widths: Sequence[int] = (32, 64, 128, 256)):
        super().__init__()
        layers, cin = [], 3
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(cin, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w, **BN), nn.ReLU()]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = w
        self.body = nn.Sequential(*layers)
        self.num_features = widths[-1]
        self.apply(_kaiming)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(2, 3))


class MLP(nn.Module):
    """``ssl_jax.models.heads.MLP``: [Linear (no bias), BN, ReLU] x hidden, Linear (bias)."""

    def __init__(self, d_in: int, hidden: Sequence[int], out: int):
        super().__init__()
        layers = []
        for h in hidden:
            layers += [nn.Linear(d_in, h, bias=False), nn.BatchNorm1d(h, **BN), nn.ReLU()]
            d_in = h
        layers.append(nn.Linear(d_in, out, bias=True))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Prototypes(nn.Module):
    """SwAV's head: L2-normalise, then scores against K prototypes (columns kept unit-norm)."""

    def __init__(self, dim: int, k: int):
        super().__init__()
        # [D, K] as the Flax kernel; LeCun-normal scale (the columns are normalised anyway).
        self.kernel = nn.Parameter(torch.randn(dim, k) / dim**0.5)
        self.normalize()

    @torch.no_grad()
    def normalize(self) -> None:
        self.kernel.div_(self.kernel.norm(dim=0, keepdim=True).clamp_min(1e-12))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(z, dim=1) @ self.kernel


def encoder(name: str) -> nn.Module:
    """The backbone ``ssl_jax.build.encoder`` builds for ``model.encoder=name`` (CIFAR stem)."""
    if name == "resnet18":
        return ResNet18Cifar()
    if name == "convnet":
        return ConvNet()
    raise ValueError(f"no PyTorch peer for encoder {name!r}; use resnet18 or convnet")
