"""Adapter running an evasion attack of the Adversarial Robustness Toolbox (ART) on a label-free surrogate."""

from __future__ import annotations

import copy
import importlib
import inspect
from collections.abc import Iterable
from contextlib import nullcontext
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import AfterValidator, Field
from torch import Tensor, nn

from zepad_bench.errors import UserError
from zepad_bench.interfaces import Attack
from zepad_bench.nn.encoder import Encoder
from zepad_bench.nn.pgd import project
from zepad_bench.seeding import seeded_global_rng
from zepad_bench_plugins.attacks.common import ProbeOptions, PseudoLabelProbe, apply_delta, collect, fit_probe

UNIVERSAL = ("UniversalPerturbation",)
"""ART attacks fitted once on the attacker images (their ``noise`` is the universal δ)."""


def _class_name(name: str) -> str:
    if not name.isidentifier():
        raise ValueError(f"must be an ART evasion attack class name (got {name!r})")
    return name


def _no_eps(params: dict[str, Any]) -> dict[str, Any]:
    if "eps" in params:
        raise ValueError("must not set eps: the budget is the suite's eps")
    return params


class ARTAttack(Attack):
    """Any ART evasion attack by class name (Nicolae et al., "Adversarial Robustness Toolbox v1.0", 2018).

    The surrogate classifier is an ART ``PyTorchClassifier`` over the public encoder(s) + the
    label-free :class:`PseudoLabelProbe` (k-means pseudo-labels of up to ``max_images`` attacker
    images), with ``clip_values=(0, 1)`` on [0, 1] pixels so ART's ``eps`` is in pixel units; the
    suite's eps is passed as ``eps`` (also to UniversalPerturbation's sub-attack unless
    ``params.attacker_params`` sets it). ``UniversalPerturbation`` runs once in ``fit`` on the
    attacker images and keeps its noise (clipped to ±eps); any other attack runs per batch in
    :meth:`perturb` with ``y=None`` (the probe's predictions as labels). Outputs are projected to the
    ε-ball and (unless ``clamp=false``) [0, 1] whatever the attack does; ART's global NumPy/torch
    draws are seeded from the run.
    """

    name = "art"

    class Options(ProbeOptions):
        attack: Annotated[str, AfterValidator(_class_name)] = Field(
            description="an ART evasion attack class (art.attacks.evasion), e.g. ProjectedGradientDescent"
        )
        params: Annotated[dict[str, Any], AfterValidator(_no_eps)] = Field(
            default_factory=dict,
            description="keyword arguments of the ART attack (checked against its attack_params); the budget "
            "is the suite's eps",
        )
        max_images: int = Field(1000, ge=1, description="attacker images the pseudo-label probe is fitted on")

    def __init__(self, eps: float, **params: Any):
        super().__init__(eps, **params)
        self.delta: Tensor | None = None
        self.probe_weight: Tensor | None = None
        self.probe_bias: Tensor | None = None
        self._art: Any = None

    def check(self) -> None:
        cls = self._attack_class()
        unknown = sorted(set(self.params) - set(cls.attack_params))
        if unknown:
            raise UserError(
                f"art: {self.attack} has no parameter {', '.join(unknown)}; "
                f"known: {', '.join(cls.attack_params)}"
            )

    def _attack_class(self) -> type:
        from art.attacks import EvasionAttack, evasion

        cls = getattr(evasion, self.attack, None)
        if not (isinstance(cls, type) and issubclass(cls, EvasionAttack)):
            known = ", ".join(n for n in dir(evasion) if isinstance(getattr(evasion, n), type))
            raise UserError(f"art: no evasion attack {self.attack!r}; known: {known}")
        return cls

    def _attack_kwargs(self, cls: type, given: dict[str, Any]) -> dict[str, Any]:
        """``given`` over the suite's eps and ``verbose=False`` where ``cls`` takes them; the same for the
        sub-attack that universal wrappers build from ``attacker`` + ``attacker_params`` (ART's own
        sub-attack defaults, e.g. eps 0.3, are not our budget)."""
        defaults = {"eps": self.eps, "verbose": False}
        kwargs = {k: v for k, v in defaults.items() if k in cls.attack_params} | given
        subattacks = getattr(cls, "attacks_dict", None)
        if subattacks:
            attacker = kwargs.get("attacker", inspect.signature(cls).parameters["attacker"].default)
            if attacker in subattacks:
                module, _, name = subattacks[attacker].rpartition(".")
                sub = getattr(importlib.import_module(module), name)
                kwargs["attacker_params"] = self._attack_kwargs(sub, kwargs.get("attacker_params") or {})
        return kwargs

    def _art_attack(self, shape: tuple[int, ...]) -> Any:
        """The ART attack on a PyTorchClassifier over frozen encoder copies + the probe (built once)."""
        if self._art is None:
            from art.estimators.classification import PyTorchClassifier

            if self.probe_weight is None or self.probe_bias is None:
                raise RuntimeError("art: call fit() (or load_state_dict()) before perturb()")
            # copies: ART's loss_gradient calls backward(), which would fill the shared encoders' .grad
            encoders = [copy.deepcopy(e).requires_grad_(False) for e in self.encoders]
            model = PseudoLabelProbe(encoders, self.probe_weight, self.probe_bias).eval()
            cuda = str(self.ctx.device).startswith("cuda")
            # ART places the model on cuda:{current_device}: make that the run's device
            with torch.cuda.device(torch.device(self.ctx.device)) if cuda else nullcontext():
                classifier = PyTorchClassifier(
                    model,
                    loss=nn.CrossEntropyLoss(),
                    input_shape=shape,
                    nb_classes=len(self.probe_weight),
                    clip_values=(0.0, 1.0) if self.clamp else None,
                    device_type="gpu" if cuda else "cpu",
                )
            cls = self._attack_class()
            self._art = cls(classifier, **self._attack_kwargs(cls, self.params))
        return self._art

    def _generate(self, x: Tensor) -> Tensor:
        attack = self._art_attack(tuple(x.shape[1:]))
        with seeded_global_rng(self.ctx.generator(1).initial_seed()), torch.enable_grad():
            adv = attack.generate(x.detach().cpu().numpy().astype(np.float32))
        return torch.from_numpy(np.asarray(adv, dtype=np.float32))

    def fit(self, encoders: list[Encoder], images: Iterable[Tensor]) -> None:
        super().fit(encoders, images)
        self._art = None
        data, batch_size = collect(images, self.max_images)
        self.probe_weight, self.probe_bias = fit_probe(
            encoders, data, self.clusters, self.ctx.seed, batch_size, self.ctx.device
        )
        if self.attack in UNIVERSAL:
            self._generate(data)
            noise = torch.from_numpy(np.asarray(self._art.noise, dtype=np.float32))
            self.delta = noise.clamp(-self.eps, self.eps).to(self.ctx.device)

    def perturb(self, x: Tensor) -> Tensor:
        if self.delta is not None:
            return apply_delta(x, self.delta, self.clamp)
        return project(self._generate(x).to(x), x, self.eps, self.clamp)
