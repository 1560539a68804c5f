"""Encoder sources ``hub`` (any timm model) and ``clip`` (an open_clip image tower), pretrained weights
fetched on first use into the standard Hugging Face cache.

The model is wrapped as an :class:`Encoder` whose ``forward`` carries the model's own eval
preprocessing (resize to its input side, its mean/std), so attacks see [0, 1] pixels and ε stays in
pixel units. Deviation from timm/open_clip's PIL pipelines, by design: the whole image is resized
(bilinear, differentiable) without their centre crop (``crop_pct``), so every perturbed pixel is seen.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

from zepad_bench import EncoderSource
from zepad_bench.errors import UserError

if TYPE_CHECKING:
    from torch import nn

    from zepad_bench.data.images import LabeledImages
    from zepad_bench.nn.encoder import Encoder


class PublicEncoder(EncoderSource):
    """Shared part of ``hub`` and ``clip``: build, wrap with preprocessing, record and pin the weights.

    Params: ``model`` (the library's model name), ``model_params`` (constructor overrides, e.g.
    ``img_size``), ``input_size`` (override the model's input side), ``sha256`` (pins
    :func:`~zepad_bench.nn.hub.weights_sha256` of the loaded weights), ``cache_dir`` (default: the
    Hugging Face cache). The encoder's ``meta`` records source, model, weights and their sha256.
    """

    library: ClassVar[str]  # "timm" | "open_clip"

    def __init__(
        self,
        model: str,
        model_params: dict[str, Any] | None = None,
        input_size: int | None = None,
        sha256: str | None = None,
        cache_dir: str | None = None,
    ):
        super().__init__()
        from zepad_bench.nn import hub

        hub.require(self.library)
        if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
            raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
        if input_size is not None and (
            isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1
        ):
            raise ValueError(f"input_size must be a positive integer, got {input_size!r}")
        self.model, self.model_params = model, dict(model_params or {})
        self.input_size, self.sha256, self.cache_dir = input_size, sha256, cache_dir

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
    """Any timm model (e.g. DINO ``vit_small_patch16_224.dino``, MAE ``vit_base_patch16_224.mae``).

    Extra param: ``pretrained`` (default true; false builds the architecture with random weights).
    """

    name = "hub"
    library = "timm"

    def __init__(self, model: str, pretrained: bool = True, **params: Any):
        super().__init__(model, **params)
        from zepad_bench.nn.hub import check_timm

        if not isinstance(pretrained, bool):
            raise ValueError(f"pretrained must be true or false, got {pretrained!r}")
        check_timm(model)
        self.pretrained = pretrained

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

    Extra param: ``pretrained``: an open_clip tag (e.g. "openai", "laion2b_s34b_b79k"), or false for
    random weights. Features are the tower's projected embedding.
    """

    name = "clip"
    library = "open_clip"

    def __init__(self, model: str, pretrained: str | bool, **params: Any):
        super().__init__(model, **params)
        from zepad_bench.nn.hub import check_clip

        if pretrained is True or not isinstance(pretrained, str | bool):
            raise ValueError(f"pretrained must be an open_clip tag or false, got {pretrained!r}")
        check_clip(model, pretrained or None)
        self.pretrained = pretrained or None

    def weights(self) -> str:
        return self.pretrained or "random"

    def repo_id(self) -> str | None:
        import open_clip

        return open_clip.get_pretrained_cfg(self.model, self.pretrained or "").get("hf_hub") or None

    def load_model(self):
        from zepad_bench.nn.hub import clip_model, clip_preprocessing

        visual = clip_model(self.model, self.pretrained, self.cache_dir, **self.model_params)
        return visual, clip_preprocessing(visual)
