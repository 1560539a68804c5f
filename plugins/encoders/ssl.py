"""Encoder source ``ssl``: pretrain an encoder on the suite's dataset with one of the paper's SSL methods."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import ConfigDict, Field

from zepad_bench import EncoderSource
from zepad_bench.errors import UserError
from zepad_bench.nn.encoder_choices import NORMALISATIONS, SSL_METHODS, normalisation
from zepad_bench.nn.ssl.presets import RECIPES, SOLO_LEARN_SETTINGS, solo_learn_preset

if TYPE_CHECKING:
    from zepad_bench.data.images import LabeledImages
    from zepad_bench.nn.encoder import Encoder


DEFAULTS = {"arch": "small-cnn", "epochs": 20, "batch_size": 256, "normalisation": "cifar"}
"""The ``ssl`` plugin's settings without a preset (CPU-sized)."""


class SSLEncoder(EncoderSource):
    """Pretrains an encoder with an SSL method (solo-learn CIFAR recipe) on the table's ``data``.

    Any recipe parameter of the method (e.g. ``lr``, ``temperature``, ``queue_size``) is accepted and
    validated up front. ``recipe = "solo-learn"`` presets everything to solo-learn's published recipe
    of the method on ``recipe_dataset`` ("cifar10": 1000 epochs, batch 256, CIFAR ResNet18;
    "imagenet100": 400 epochs, ImageNet ResNet18 at 224 px; see :mod:`zepad_bench.nn.ssl.presets`);
    params given in the table still win. Without a preset: :data:`DEFAULTS`.
    """

    name = "ssl"
    methods: ClassVar[tuple[str, ...]] = SSL_METHODS

    class Options(EncoderSource.Options):
        model_config = ConfigDict(extra="allow")
        extra_help = "recipe parameters of the method (e.g. lr, temperature, queue_size), checked against it"

        method: Literal[SSL_METHODS] = Field(description="SSL method")
        arch: str | None = Field(
            None,
            description="backbone (built-in or registered by a plugin); unset: small-cnn or the recipe's",
        )
        arch_params: dict[str, Any] = Field(
            default_factory=dict, description="keyword arguments of the backbone"
        )
        epochs: int | None = Field(None, ge=1, description="pretraining epochs (unset: 20 or the recipe's)")
        batch_size: int | None = Field(
            None, ge=1, description="pretraining batch size (unset: 256 or the recipe's)"
        )
        input_size: int | None = Field(
            None,
            ge=1,
            description="resize inside the encoder (unset: the suite's image size or the recipe's)",
        )
        normalisation: Literal[NORMALISATIONS] | None = Field(
            None, description="input normalisation statistics (unset: cifar or the recipe's)"
        )
        recipe: Literal[RECIPES] | None = Field(
            None,
            description="preset every setting to solo-learn's published recipe of the method; given ones win",
        )
        recipe_dataset: Literal[tuple(SOLO_LEARN_SETTINGS)] = Field(
            "cifar10",
            description="the recipe's pretraining set (cifar10: CIFAR ResNet18; imagenet100: 224 px)",
        )

    def __init__(self, **params: Any):
        super().__init__(**params)
        from zepad_bench.nn.backbones import known_archs
        from zepad_bench.nn.ssl import recipe as resolve

        settings: dict[str, Any] = dict(DEFAULTS)
        overrides = dict(self.options.model_extra or {})
        if self.recipe is not None:
            preset, preset_overrides = solo_learn_preset(self.method, self.recipe_dataset)
            settings.update(preset)
            overrides = {**preset_overrides, **overrides}
        given = ("arch", "epochs", "batch_size", "normalisation", "input_size")
        settings.update({k: getattr(self.options, k) for k in given if getattr(self.options, k) is not None})
        if settings["arch"] not in known_archs():
            raise ValueError(f"unknown arch {settings['arch']!r}; known: {', '.join(known_archs())}")
        self.cfg = resolve(self.method, **overrides)
        self.arch, self.epochs, self.batch_size = settings["arch"], settings["epochs"], settings["batch_size"]
        self.input_size, self.normalisation = settings.get("input_size"), settings["normalisation"]
        self.recipe_params = overrides

    def fingerprint(self) -> str:
        """With a preset, the resolved settings and recipe (so a changed preset is recomputed)."""
        if self.recipe is None:
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
            **self.recipe_params,
        )
        return encoder
