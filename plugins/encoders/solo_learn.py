"""Encoder source ``solo-learn``: a pretrained backbone from a solo-learn-layout checkpoint file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from zepad_bench import EncoderSource
from zepad_bench.errors import MissingData
from zepad_bench.nn.encoder_choices import NORMALISATIONS, normalisation
from zepad_bench.params import Sha256

if TYPE_CHECKING:
    from zepad_bench.data.images import LabeledImages
    from zepad_bench.nn.encoder import Encoder


class SoloLearnEncoder(EncoderSource):
    """Loads the backbone of a solo-learn ``.ckpt`` (or ``zepad-bench pretrain`` output) safely.

    With ``paper``, ``run --download`` fetches the manifest's file into ``path`` and verifies its sha256
    where a source is reachable; a file already at ``path`` (e.g. one built by ``zepad-bench
    pretrain``) is used as is.
    """

    name = "solo-learn"
    path_params = ("path",)

    class Options(EncoderSource.Options):
        path: str = Field(description="the checkpoint file (relative: from the suite's folder)")
        arch: str = Field(
            "resnet18", description="backbone of the checkpoint (resnet18: solo-learn's CIFAR stem)"
        )
        arch_params: dict[str, Any] | None = Field(
            None, description="keyword arguments of the backbone builder"
        )
        sha256: Sha256 | None = Field(None, description="pins the file: loading fails on other contents")
        normalisation: Literal[NORMALISATIONS] = Field("cifar", description="input normalisation statistics")
        input_size: int | None = Field(
            None,
            ge=1,
            description="resize inside the encoder (e.g. 32 for a CIFAR checkpoint fed 64-px images)",
        )
        paper: str | None = Field(
            None,
            description="an id of the paper's encoders manifest (e.g. simclr-cifar10): --download fetches "
            "that file into path and verifies it",
        )

        @model_validator(mode="after")
        def _as_the_paper(self) -> SoloLearnEncoder.Options:
            if self.paper is not None:
                from zepad_bench.paper_encoders import paper_encoder

                entry = paper_encoder(self.paper)
                for key in ("arch", "normalisation"):
                    if getattr(self, key) != entry[key]:
                        raise ValueError(
                            f"paper encoder {self.paper} has {key} {entry[key]!r}; set {key} = {entry[key]!r}"
                        )
            return self

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.path = Path(self.options.path).expanduser()

    def check(self) -> None:
        if not self.path.is_file():
            fetch = "fetch it with `zepad-bench run SUITE --download`, " if self._fetchable() else ""
            raise MissingData(
                f"{self.path}: checkpoint not found (encoder plugin 'solo-learn'): {fetch}bring solo-learn's "
                "file, build it with `zepad-bench pretrain --method M --dataset D --out DIR`, or rebuild it "
                'in the run with plugin = "ssl", recipe = "solo-learn"'
            )

    def _fetchable(self) -> bool:
        """Whether ``run --download`` can fetch this file (``paper`` names a hosted, pinned file)."""
        from zepad_bench.paper_encoders import fetchable_sources, paper_encoder

        if self.paper is None:
            return False
        entry = paper_encoder(self.paper)
        return bool(fetchable_sources(entry) and entry.get("sha256"))

    def fetch(self) -> None:
        """``--download``: fetch and verify the manifest's file (``paper``) into ``path`` unless a file is
        already there."""
        if self.paper is None or self.path.is_file():
            self.check()
            return
        from zepad_bench.paper_encoders import fetch_paper_encoder

        fetch_paper_encoder(self.paper, self.path)

    def fingerprint(self) -> str:
        """The pinned sha256, else the file's size and modification time (a replaced file is re-read)."""
        if self.sha256:
            return self.sha256.lower()
        stat = self.path.stat()
        return f"{stat.st_size}:{stat.st_mtime_ns}"

    def build(self, data: LabeledImages | None) -> Encoder:
        from zepad_bench.nn.checkpoints import load_solo_learn

        mean, std = normalisation(self.normalisation)
        encoder = load_solo_learn(
            self.path,
            self.arch,
            sha256=self.sha256,
            mean=mean,
            std=std,
            input_size=self.input_size,
            arch_params=self.arch_params,
        )
        return encoder.to(self.ctx.device).eval()
