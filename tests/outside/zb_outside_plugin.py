"""An outside plugin package as a third party would ship it (installed via an entry point in tests)."""

import torch

from zepad_bench import Attack, DatasetSource, EncoderSource, hookimpl
from zepad_bench.data.images import LabeledImages
from zepad_bench.nn.encoder import Encoder


class SignFlip(Attack):
    """Outside attack: a fixed checkerboard of ±eps (no fitting needed)."""

    name = "outside-sign"

    def fit(self, encoders, images):
        super().fit(encoders, images)
        x = next(iter(images))
        grid = torch.arange(x.shape[-1])
        self.delta = ((grid[:, None] + grid[None, :]) % 2 * 2 - 1).float().expand(1, 3, -1, -1) * self.eps

    def perturb(self, x):
        return (x + self.delta.to(x.device)).clamp(0, 1)


class Stripes(DatasetSource):
    """Outside dataset: two classes of horizontal vs vertical stripes with seeded noise."""

    name = "outside-stripes"

    def __init__(self, n: int = 64):
        super().__init__()
        self.n = n

    def load(self, split, image_size, seed):
        g = torch.Generator().manual_seed(seed + (split == "test"))
        labels = torch.arange(self.n) % 2
        ramp = (torch.arange(image_size) % 4 < 2).float()
        base = torch.where(labels[:, None, None].bool(), ramp[None, :, None], ramp[None, None, :])
        images = base[:, None].expand(-1, 3, -1, -1) * 0.6 + 0.4 * torch.rand(
            self.n, 3, image_size, image_size, generator=g
        )
        return LabeledImages((images * 255).round().to(torch.uint8), labels, ["h", "v"])


class TinyConv(torch.nn.Module):
    """Outside backbone: one 3×3 conv, ReLU and global average pooling (``out_dim`` = width)."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, width, 3, padding=1)
        self.out_dim = width

    def forward(self, x):
        return torch.relu(self.conv(x)).mean((2, 3))


class RandomInit(EncoderSource):
    """Outside encoder source: a seeded random-init small CNN (or another registered ``arch``)."""

    name = "outside-random"
    param_help = {"width": "channel width of the backbone", "arch": "a registered architecture"}

    def __init__(self, width: int = 8, arch: str = "small-cnn"):
        super().__init__()
        self.width, self.arch = width, arch

    def build(self, data):
        torch.manual_seed(self.ctx.seed)
        return Encoder(self.arch, {"width": self.width})


@hookimpl
def register_attacks(register):
    register(SignFlip)


@hookimpl
def register_datasets(register):
    register(Stripes)


@hookimpl
def register_encoders(register):
    register(RandomInit)


@hookimpl
def register_backbones(register):
    register("outside-tiny", TinyConv)
