"""Encoder sources ``hub`` (any timm model) and ``clip`` (an open_clip image tower), pretrained weights
fetched on first use into the standard Hugging Face cache.

The model is wrapped as an :class:`Encoder` whose ``forward`` carries the model's own eval
preprocessing (resize to its input side, its mean/std), so attacks see [0, 1] pixels and ε stays in
pixel units. Deviation from timm/open_clip's PIL pipelines, by design: the whole image is resized
(bilinear, differentiable) without their centre crop (``crop_pct``), so every perturbed pixel is seen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import AfterValidator, Field

from zepad_bench import EncoderSource
from zepad_bench.errors import UserError
from zepad_bench.params import Sha256

if TYPE_CHECKING:
    from torch import nn

    from zepad_bench.data.images import LabeledImages
    from zepad_bench.nn.encoder import Encoder


def _tag_or_false(value: str | bool) -> str | bool:
    if value is True:
        raise ValueError("must be an open_clip tag or false (got true)")
    return value


class PublicEncoder(EncoderSource):
    """Shared part of ``hub`` and ``clip``: build, wrap with preprocessing, record and pin the weights.

    ``sha256`` pins :func:`~zepad_bench.nn.hub.weights_sha256` of the loaded weights. The encoder's
    ``meta`` records source, model, weights and their sha256.
    """

    library: ClassVar[str]  # "timm" | "open_clip"

    class Options(EncoderSource.Options):
        model: str = Field(description="the library's model name")
        model_params: dict[str, Any] = Field(
            default_factory=dict, description="model constructor overrides (e.g. img_size)"
        )
        input_size: int | None = Field(None, ge=1, description="input side (unset: the model's own)")
        sha256: Sha256 | None = Field(None, description="pins the sha256 of the loaded weights")
        cache_dir: str | None = Field(
            None, description="where weights are cached (unset: the Hugging Face cache)"
        )

    def __init__(self, **params: Any):
        super().__init__(**params)
        from zepad_bench.nn import hub

        hub.require(self.library)

    def fingerprint(self) -> str:
        """The pinned sha256, else the weights' name (the table's params already name the model)."""
        return self.sha256.lower() if self.sha256 else f"{self.library}:{self.model}:{self.weights()}"

    def weights(self) -> str:
        """Which weights are loaded, for provenance (``"random"`` when none)."""
        raise NotImplementedError

    def load_model(self) -> tuple[nn.Module, tuple[tuple[float, ...], tuple[float, ...], int]]:
        """The (pretrained) backbone and its (mean, std, input side)."""
        raise NotImplementedError

    def repo_id(self) -> str | None:
        """The Hugging Face repository the pretrained weights come from (``None`` if not from one)."""
        raise NotImplementedError

    def build(self, data: LabeledImages | None) -> Encoder:
        from zepad_bench.nn.checkpoints import file_sha256
        from zepad_bench.nn.encoder import Encoder
        from zepad_bench.nn.hub import cached_weight_file, weights_sha256

        try:
            model, (mean, std, side) = self.load_model()
        except (RuntimeError, OSError) as exc:  # download refused, offline without a cached copy
            raise UserError(f"{self.library} model {self.model!r} ({self.weights()}): {exc}") from None
        digest = weights_sha256(model)
        if self.sha256 and digest != self.sha256.lower():
            raise UserError(
                f"{self.library} model {self.model!r}: weights sha256 {digest} differs from the pinned "
                f"{self.sha256.lower()}: other weights than expected"
            )
        meta = {"source": self.name, "model": self.model, "weights": self.weights(), "weights_sha256": digest}
        path = cached_weight_file(self.repo_id(), self.cache_dir) if self.weights() != "random" else None
        if path is not None:  # the fetched file, as the hub lists it (its LFS sha256)
            meta.update(weights_file=path, file_sha256=file_sha256(path))
        encoder = Encoder(
            f"{self.library}:{self.model}", self.model_params, mean, std, self.input_size or side, meta
        )
        encoder.backbone.load_state_dict(model.state_dict(), strict=True)
        return encoder.to(self.ctx.device).eval()


class HubEncoder(PublicEncoder):
    """Any timm model (e.g. DINO ``vit_small_patch16_224.dino``, MAE ``vit_base_patch16_224.mae``)."""

    name = "hub"
    library = "timm"

    class Options(PublicEncoder.Options):
        pretrained: bool = Field(True, description="load the pretrained weights (false: random weights)")

    def __init__(self, **params: Any):
        super().__init__(**params)
        from zepad_bench.nn.hub import check_timm

        check_timm(self.model)

    def weights(self) -> str:
        if not self.pretrained:
            return "random"
        repo = self.repo_id()
        return f"hf-hub:{repo}" if repo else "timm default"

    def repo_id(self) -> str | None:
        import timm

        cfg = timm.get_pretrained_cfg(self.model)
        return cfg.hf_hub_id if cfg is not None else None

    def load_model(self):
        from zepad_bench.nn.hub import timm_model, timm_preprocessing

        model = timm_model(self.model, self.pretrained, self.cache_dir, **self.model_params)
        return model, timm_preprocessing(model, self.model_params.get("img_size"))


class ClipEncoder(PublicEncoder):
    """The image tower of an open_clip model (CLIP, the paper's Appendix K), e.g. ``RN50`` / ``openai``.

    Features are the tower's projected embedding.
    """

    name = "clip"
    library = "open_clip"

    class Options(PublicEncoder.Options):
        pretrained: Annotated[str | bool, AfterValidator(_tag_or_false)] = Field(
            description='an open_clip pretrained tag (e.g. "openai"), or false for random weights'
        )

    def __init__(self, **params: Any):
        super().__init__(**params)
        from zepad_bench.nn.hub import check_clip

        self.pretrained = self.options.pretrained or None
        check_clip(self.model, self.pretrained)

    def weights(self) -> str:
        return self.pretrained or "random"

    def repo_id(self) -> str | None:
        import open_clip

        return open_clip.get_pretrained_cfg(self.model, self.pretrained or "").get("hf_hub") or None

    def load_model(self):
        from zepad_bench.nn.hub import clip_model, clip_preprocessing

        visual = clip_model(self.model, self.pretrained, self.cache_dir, **self.model_params)
        return visual, clip_preprocessing(visual)
