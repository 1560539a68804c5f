"""Encoder source ``ssl``: pretrain an encoder on the suite's dataset with one of the paper's SSL methods."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from zepad_bench import EncoderSource
from zepad_bench.errors import UserError
from zepad_bench.zoo import NORMALISATIONS, SSL_METHODS, normalisation

if TYPE_CHECKING:
    from zepad_bench.data.images import LabeledImages
    from zepad_bench.nn.encoder import Encoder


class SSLEncoder(EncoderSource):
    """Pretrains an encoder with an SSL method (solo-learn CIFAR recipe) on the table's ``data``.

    Params: ``method`` (one of :attr:`methods`), ``arch``, ``arch_params``, ``epochs``,
    ``batch_size``, ``input_size``, ``normalisation`` ("cifar" | "imagenet"), and any recipe
    parameter of the method (e.g. ``lr``, ``temperature``, ``queue_size``), validated up front.
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
        arch: str = "small-cnn",
        arch_params: dict[str, Any] | None = None,
        epochs: int = 20,
        batch_size: int = 256,
        input_size: int | None = None,
        normalisation: str = "cifar",
        **recipe: Any,
    ):
        super().__init__()
        from zepad_bench.nn.backbones import known_archs
        from zepad_bench.nn.ssl import recipe as resolve

        if arch not in known_archs():
            raise ValueError(f"unknown arch {arch!r}; known: {', '.join(known_archs())}")
        for what, value in (("epochs", epochs), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{what} must be a positive integer, got {value!r}")
        resolve(method, **recipe)
        self.method, self.arch, self.arch_params = method, arch, dict(arch_params or {})
        self.epochs, self.batch_size, self.input_size = epochs, batch_size, input_size
        self.normalisation, self.recipe = normalisation, recipe

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
