"""AdvEncoder (Zhou et al., ICCV 2023): a universal perturbation from a fixed-noise generator."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from zepad_bench.nn.encoder import Encoder
from zepad_bench_plugins.attacks.common import AttackOptions, Unit, UniversalAttack, cycle, frozen

NOISE_DIM = 100  # the authors' z size


class PerturbationGenerator(nn.Module):
    """AdvEncoder's DCGAN-style generator sized to the images (authors' ``model/adv_gan.py``).

    ConvT(nz→2^(d−1)·ngf, k4 s1) to 4×4, then d−1 stride-2 ConvT–BN–ReLU halving the channels, then
    ConvT(ngf→3, k4 s2)–Tanh, so the side is 4·2^d ≥ the image side (d = 4, ngf = 128 is the authors'
    64-px net); a Conv2d(B→1, 3×3) over the batch axis fuses the B outputs of the fixed noise z into
    one map, resized to the image size when that is not a power of two.
    """

    def __init__(self, height: int, width: int, ngf: int, z_batch: int, nz: int = NOISE_DIM):
        super().__init__()
        self.size = (height, width)
        doublings = max(1, math.ceil(math.log2(max(height, width) / 4)))
        channels = ngf * 2 ** (doublings - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz, channels, 4, 1, 0, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(True),
        ]
        for _ in range(doublings - 1):
            layers += [
                nn.ConvTranspose2d(channels, channels // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(channels // 2),
                nn.ReLU(True),
            ]
            channels //= 2
        layers += [nn.ConvTranspose2d(channels, 3, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.fuse = nn.Conv2d(z_batch, 1, 3, padding=1)

    def reset_parameters(self, generator: torch.Generator) -> None:
        """The authors' init: conv weights N(0, 0.02), biases 0 (BN keeps weight 1, bias 0)."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(module.weight, 0.0, 0.02, generator=generator)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, z: Tensor) -> Tensor:
        out = self.fuse(self.net(z).transpose(0, 1)).transpose(0, 1)  # (1, 3, S, S)
        if out.shape[-2:] != self.size:
            out = F.interpolate(out, size=self.size, mode="bilinear", align_corners=False)
        return out


def high_pass(x: Tensor, radius: float) -> Tensor:
    """Per-channel FFT high-pass: zero the centred (fftshifted) disc of squared radius < radius²."""
    h, w = x.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    keep = ((yy - h // 2) ** 2 + (xx - w // 2) ** 2) >= radius**2
    spectrum = torch.fft.fftshift(torch.fft.fft2(x), dim=(-2, -1)) * keep
    return torch.fft.ifft2(torch.fft.ifftshift(spectrum, dim=(-2, -1))).real


def info_nce(query: Tensor, key: Tensor, temperature: float) -> Tensor:
    """InfoNCE of matching ``query[i]`` to ``key[i]`` against the batch's other keys (cosine logits / τ)."""
    logits = F.normalize(query, dim=1) @ F.normalize(key, dim=1).T / temperature
    return F.cross_entropy(logits, torch.arange(len(query), device=query.device))


class AdvEncoder(UniversalAttack):
    """AdvEncoder-PER (Zhou et al., "Downstream-agnostic Adversarial Examples", ICCV 2023): a universal
    perturbation from a generator trained against the encoder's features.

    A generator G with a fixed noise input z (``z_batch`` = 256 vectors, the authors' batch size, fused
    into one map) produces δ = clamp(G(z), ±ε); G is trained with Adam
    (lr 2e-4, β 0.5/0.999, 20 epochs, one step per attacker batch) to minimise the authors' code
    loss α·(−InfoNCE(f(x), f(x'), τ)) + MSE(x', x) − MSE(HF(x), HF(x')) with x' = x+δ, α = 5,
    τ = 0.1 and HF an FFT high-pass of radius r = 8 (the paper writes β = 5 on the HFC term and L2
    norms; we follow the code). Already label-free: f is the encoder's feature output, summed over
    encoders in white-box. Deviations: x' is clamped to [0, 1] (the authors never clamp:
    ``clamp=false``), and the generator depth follows the image size (the authors' fixed 64-px net
    when ngf = 128).
    """

    name = "advencoder"

    class Options(AttackOptions):
        epochs: int = Field(20, ge=1, description="passes over the attacker data (one Adam step per batch)")
        alpha: float = Field(5.0, ge=0, description="weight α of the InfoNCE term in the authors' code loss")
        temperature: float = Field(0.1, gt=0, description="InfoNCE temperature τ (cosine logits / τ)")
        radius: float = Field(8.0, ge=0, description="radius r of the FFT high-pass disc of the HFC term")
        lr: float = Field(2e-4, gt=0, description="Adam learning rate of the generator")
        betas: tuple[Unit, Unit] = Field((0.5, 0.999), description="Adam's β1, β2 for the generator")
        ngf: int = Field(
            128, ge=1, description="channels of the generator's last layer (128: the authors' net)"
        )
        z_batch: int = Field(
            256, ge=1, description="fixed noise vectors z fused into one perturbation (the authors' batch)"
        )

    def fit(self, encoders: list[Encoder], images: Iterable[Tensor]) -> None:
        super().fit(encoders, images)
        device = self.ctx.device
        first = next(cycle(images))
        rng = self.ctx.generator()
        generator = PerturbationGenerator(*first.shape[-2:], self.ngf, self.z_batch)
        generator.reset_parameters(rng)
        generator.to(device).train()
        z = torch.randn(self.z_batch, NOISE_DIM, 1, 1, generator=rng).to(device)
        params = list(generator.parameters())
        optimizer = torch.optim.Adam(params, lr=self.lr, betas=self.betas)
        with frozen(encoders):
            for _ in self.ctx.track(range(self.epochs), "advencoder epochs"):
                for x in images:
                    x = x.to(device)
                    x_adv = self.add(x, generator(z).clamp(-self.eps, self.eps))
                    # HF is linear, so MSE(HF(x), HF(x')) = mean(HF(x' − x)²)
                    loss = F.mse_loss(x_adv, x) - high_pass(x_adv - x, self.radius).pow(2).mean()
                    for encoder in encoders:
                        with torch.no_grad():
                            clean = encoder(x)
                        loss = loss - self.alpha * info_nce(clean, encoder(x_adv), self.temperature)
                    grads = torch.autograd.grad(loss, params)
                    for p, g in zip(params, grads):
                        p.grad = g
                    optimizer.step()
            with torch.no_grad():
                self.delta = generator(z).clamp(-self.eps, self.eps).detach()
