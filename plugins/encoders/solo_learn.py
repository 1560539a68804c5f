"""Encoder source ``solo-learn``: a pretrained backbone from a solo-learn-layout checkpoint file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zepad_bench import EncoderSource
from zepad_bench.errors import MissingData
from zepad_bench.zoo import NORMALISATIONS, normalisation

if TYPE_CHECKING:
    from zepad_bench.data.images import LabeledImages
    from zepad_bench.nn.encoder import Encoder


class SoloLearnEncoder(EncoderSource):
    """Loads the backbone of a solo-learn ``.ckpt`` (or ``zepad-bench pretrain`` output) safely.

    Params: ``path``, ``arch`` (default "resnet18", solo-learn's CIFAR stem), ``arch_params``,
    ``sha256`` (pins the file), ``normalisation`` ("cifar" | "imagenet"), ``input_size`` (resize
    inside the encoder, e.g. 32 for a CIFAR checkpoint fed 64×64 images), ``paper`` (an id of the
    paper's encoders manifest, e.g. "simclr-cifar10": ``run --download`` fetches that file into
    ``path`` and verifies its sha256 where a source is reachable; a file already at ``path``, e.g.
    one built by ``zepad-bench pretrain``, is used as is).
    """

    name = "solo-learn"
    path_params = ("path",)

    def __init__(
        self,
        path: str,
        arch: str = "resnet18",
        arch_params: dict[str, Any] | None = None,
        sha256: str | None = None,
        normalisation: str = "cifar",
        input_size: int | None = None,
        paper: str | None = None,
    ):
        super().__init__()
        if paper is not None:
            from zepad_bench.paper_encoders import paper_encoder

            entry = paper_encoder(paper)
            for key, value in (("arch", arch), ("normalisation", normalisation)):
                if value != entry[key]:
                    raise ValueError(
                        f"paper encoder {paper} has {key} {entry[key]!r}; set {key} = {entry[key]!r}"
                    )
        if normalisation not in NORMALISATIONS:
            raise ValueError(
                f"normalisation must be one of {', '.join(NORMALISATIONS)}, got {normalisation!r}"
            )
        if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
            raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
        if input_size is not None and (
            isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1
        ):
            raise ValueError(f"input_size must be a positive integer, got {input_size!r}")
        self.path, self.arch, self.arch_params = Path(path).expanduser(), arch, arch_params
        self.sha256, self.normalisation, self.input_size = sha256, normalisation, input_size
        self.paper = paper

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
