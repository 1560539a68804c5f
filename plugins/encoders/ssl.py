"""Encoder source ``ssl``: pretrain an encoder on the suite's dataset with one of the paper's SSL methods."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from zepad_bench import EncoderSource
from zepad_bench.errors import UserError
from zepad_bench.nn.encoder_choices import NORMALISATIONS, SSL_METHODS, normalisation

if TYPE_CHECKING:
    from zepad_bench.data.images import LabeledImages
    from zepad_bench.nn.encoder import Encoder


DEFAULTS = {"arch": "small-cnn", "epochs": 20, "batch_size": 256, "normalisation": "cifar"}
"""The ``ssl`` plugin's settings without a preset (CPU-sized)."""


class SSLEncoder(EncoderSource):
    """Pretrains an encoder with an SSL method (solo-learn CIFAR recipe) on the table's ``data``.

    Params: ``method`` (one of :attr:`methods`), ``arch``, ``arch_params``, ``epochs``,
    ``batch_size``, ``input_size``, ``normalisation`` ("cifar" | "imagenet"), and any recipe
    parameter of the method (e.g. ``lr``, ``temperature``, ``queue_size``), validated up front.
    ``recipe = "solo-learn"`` presets everything to solo-learn's published recipe of the method on
    ``recipe_dataset`` ("cifar10": 1000 epochs, batch 256, CIFAR ResNet18; "imagenet100": 400
    epochs, ImageNet ResNet18 at 224 px; see :mod:`zepad_bench.nn.ssl.presets`); params given in the
    table still win. Without a preset: small-cnn, 20 epochs, batch 256, CIFAR normalisation.
    """

    name = "ssl"
    methods: ClassVar[tuple[str, ...]] = SSL_METHODS
    extra_params = "recipe parameters of the method (e.g. lr, temperature, queue_size)"
    param_help = {
        "method": "SSL method",
        "arch": "backbone architecture (built-in or registered by a plugin)",
        "arch_params": "keyword arguments of the backbone builder",
        "epochs": "pretraining epochs",
        "batch_size": "pretraining batch size",
        "input_size": "resize inside the encoder (None: the suite's image size)",
        "normalisation": "input normalisation statistics",
    }
    param_choices = {"method": SSL_METHODS, "normalisation": NORMALISATIONS}

    def __init__(
        self,
        method: str,
        arch: str | None = None,
        arch_params: dict[str, Any] | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        input_size: int | None = None,
        normalisation: str | None = None,
        recipe: str | None = None,
        recipe_dataset: str = "cifar10",
        **overrides: Any,
    ):
        super().__init__()
        from zepad_bench.nn.backbones import known_archs
        from zepad_bench.nn.ssl import recipe as resolve
        from zepad_bench.nn.ssl.presets import RECIPES, solo_learn_preset

        settings: dict[str, Any] = {
            "arch": "small-cnn",
            "epochs": 20,
            "batch_size": 256,
            "normalisation": "cifar",
        }
        if recipe is not None:
            if recipe not in RECIPES:
                raise ValueError(f"recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
            preset, preset_overrides = solo_learn_preset(method, recipe_dataset)
            settings.update(preset)
            overrides = {**preset_overrides, **overrides}
        given = {"arch": arch, "epochs": epochs, "batch_size": batch_size, "normalisation": normalisation}
        settings.update({k: v for k, v in given.items() if v is not None})
        if input_size is not None:
            settings["input_size"] = input_size
        if settings["arch"] not in known_archs():
            raise ValueError(f"unknown arch {settings['arch']!r}; known: {', '.join(known_archs())}")
        if settings["normalisation"] not in NORMALISATIONS:
            raise ValueError(
                f"normalisation must be one of {', '.join(NORMALISATIONS)}, got {settings['normalisation']!r}"
            )
        for what in ("epochs", "batch_size"):
            value = settings[what]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{what} must be a positive integer, got {value!r}")
        self.cfg = resolve(method, **overrides)
        self.method, self.arch, self.arch_params = method, settings["arch"], dict(arch_params or {})
        self.epochs, self.batch_size = settings["epochs"], settings["batch_size"]
        self.input_size, self.normalisation = settings.get("input_size"), settings["normalisation"]
        self.recipe, self.preset = overrides, recipe

    def fingerprint(self) -> str:
        """With a preset, the resolved settings and recipe (so a changed preset is recomputed)."""
        if self.preset is None:
            return super().fingerprint()
        import json

        resolved = {
            "arch": self.arch,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "input_size": self.input_size,
            "normalisation": self.normalisation,
            "recipe": self.cfg,
        }
        return json.dumps(resolved, sort_keys=True)

    def build(self, data: LabeledImages | None) -> Encoder:
        from zepad_bench.nn.ssl import pretrain

        if data is None:
            raise UserError(
                f"encoder plugin 'ssl' ({self.method}) needs data: set data = \"<dataset id>\" in its table"
            )
        mean, std = normalisation(self.normalisation)
        encoder, _, _ = pretrain(
            self.method,
            data.images,
            labels=data.labels,
            arch=self.arch,
            arch_params=self.arch_params,
            epochs=self.epochs,
            batch_size=self.batch_size,
            seed=self.ctx.seed,
            device=self.ctx.device,
            track=self.ctx.track,
            mean=mean,
            std=std,
            input_size=self.input_size,
            **self.recipe,
        )
        return encoder
