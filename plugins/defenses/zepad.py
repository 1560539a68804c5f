"""ZePAD (Zero-Sacrifice Persistent-Robustness Adversarial Defense; ICLR 2026 submission, Sec. 4, Alg. 1).

MPAE-Branch: the victim and auxiliary public encoders, each adversarially fine-tuned once on the
defender's labeled data D_f with L = L_c + λ·L_f (Eq. 3–6). BMP-Branch: an encoder trained by
self-supervision on D_f's images only. RFDM (Eq. 7–8) fuses the branches' per-task heads, and the
branch confidences detect DAEs without any detector training (Sec. 5.4).

Differences from the authors' code (github.com/Lawliet0o/ZePAD), all deliberate;
``protocol = "authors"`` restores those that are parameters (explicit parameters win):
- ``pgd_input``/``pgd_ce_term``: PGD is crafted on the same [0, 1] input the model trains on (the
  code attacked un-normalised input but trained on normalised input), and its gradients never
  reach the parameter update (the code leaked the ten PGD backward passes into the step; authors'
  mode adds their CE gradients as an explicit loss term).
- No epoch is selected on test data: the last epoch is kept, or (``selection="val"``) the epoch
  with the best robust accuracy on a held-out stratified split of D_f.
- ``freeze_bn``: BatchNorm statistics stay frozen while tuning (small encoders diverge otherwise;
  the code trained them).
- ``fuse_on``: RFDM's weighted sum runs over the branches' softmax outputs (the code summed
  logits). Eq. 8's weights come from probabilities; over logits a branch whose attacked features
  leave the training distribution (logit norm 10× its clean one) outvotes the weights, and the
  fused prediction collapses to that branch's class (docs/fidelity.md, cross-task).
- ``bmp``: the BMP encoder is pretrained here on D_f's images (``"ssl"``: the paper, §4.1.1 and
  Alg. 1 line 2); the authors' code loads the public solo-learn SimCLR-CIFAR10 checkpoint
  (``"checkpoint"``: ``bmp_checkpoint`` is that file, pinned by the encoder manifest's sha256;
  ``run --download`` fetches it). ``"public"`` uses the clean victim.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor

from zepad_bench import Attack, Branch, DefendedModel, Defense
from zepad_bench.data.images import LabeledImages, UnlabeledBatches
from zepad_bench.data.splits import stratified_split
from zepad_bench.errors import MissingData, UserError
from zepad_bench.nn.adversarial_tuning import (
    EncoderWithHead,
    adversarial_finetune,
    eval_mode,
    new_head,
)
from zepad_bench.nn.encoder import Encoder
from zepad_bench.nn.encoder_choices import SSL_METHODS
from zepad_bench.nn.heads import MLPHead
from zepad_bench.nn.pgd import pgd
from zepad_bench.paper_encoders import fetch_paper_encoder, paper_encoder
from zepad_bench.params import Budget

from .distribution_loss import distribution_loss
from .protocol import iterate_ce, pgd_input_mode
from .tuning import CORRECTED, TuningOptions

__all__ = ["ZePAD", "distribution_loss", "ensemble_log_weights", "rfdm_log_weights"]

BMP_METHODS = tuple(m for m in SSL_METHODS if m != "supcon")
"""The BMP encoder never sees labels: every SSL method but the supervised-contrastive one."""
CHOICES = {
    "lf_on": ("logits", "features"),
    "adversary": ("pgd", "generator"),
    "selection": ("last", "val"),
    "bmp": ("ssl", "public", "checkpoint"),
    "ensemble": ("rfdm", "average", "entropy"),
    "fuse_on": ("logits", "probabilities"),
    "mpae_confidence": ("max", "mean"),
}


AUTHORS_BMP = "simclr-cifar10"
"""The authors' BMP-Branch: this entry of the paper's encoder manifest (``reference/paper_encoders.json``)."""
BMP_SOURCE_KEYS = ("paper", "arch", "arch_params", "normalisation", "sha256", "input_size")
"""What ``bmp_checkpoint_params`` may say: the ``solo-learn`` encoder source's parameters but its path."""


def _manifest_source(id_: str) -> dict[str, Any]:
    """``solo-learn`` encoder-source params of a manifest entry: its id, arch, normalisation and sha256."""
    entry = paper_encoder(id_)
    return {"paper": id_, **{k: entry[k] for k in ("arch", "normalisation", "sha256")}}


def rfdm_log_weights(log_probabilities: list[Tensor]) -> Tensor:
    """log W_i of RFDM (ZePAD Eq. 7–8), branches×N: c_i = m_i·exp(3(m_i − 0.5)), W_i = c_i/Σ_k c_k.

    ``m_i`` is branch i's maximum softmax probability per sample; computed from log-softmax
    (log c_i = log m_i + 3(m_i − 0.5)), so no weight underflows however confident a branch is.
    """
    log_m = torch.stack([lp.max(dim=1).values for lp in log_probabilities])
    log_c = log_m + 3 * (log_m.exp() - 0.5)
    return log_c - log_c.logsumexp(dim=0, keepdim=True)


def log_entropy(log_p: Tensor) -> Tensor:
    """Per-row log of the Shannon entropy −Σ p·log p, from log-probabilities, in log space:
    logsumexp_c(log p_c + log(−log p_c)) over the classes with p_c < 1 (finite for finite logits)."""
    surprise = -log_p
    positive = surprise > 0
    safe = torch.where(positive, surprise, torch.ones_like(surprise))
    terms = torch.where(positive, log_p + safe.log(), torch.full_like(log_p, -math.inf))
    return terms.logsumexp(dim=1)


def ensemble_log_weights(log_probabilities: list[Tensor], ensemble: str = "rfdm") -> Tensor:
    """Per-sample log branch weights (branches×N) of the ensembles compared in ZePAD Table S3.

    ``rfdm``: Eq. 7–8. ``average``: 1/branches. ``entropy`` (the authors' ``entropy`` option):
    W_i = H_i/Σ_k H_k with H_i the branch's prediction entropy, so the *less* confident branch weighs
    more (equal weights when every branch is exactly one-hot).
    """
    n = len(log_probabilities)
    if ensemble == "rfdm":
        return rfdm_log_weights(log_probabilities)
    if ensemble == "average":
        return torch.full((n, len(log_probabilities[0])), -math.log(n), device=log_probabilities[0].device)
    if ensemble == "entropy":
        log_h = torch.stack([log_entropy(lp) for lp in log_probabilities])
        log_h = torch.where(torch.isinf(log_h).all(dim=0, keepdim=True), torch.zeros_like(log_h), log_h)
        return log_h - log_h.logsumexp(dim=0, keepdim=True)
    raise ValueError(f"unknown ensemble {ensemble!r}; known: {', '.join(CHOICES['ensemble'])}")


class ZePAD(Defense):
    """ZePAD (Sec. 4, Alg. 1): adversarially tuned MPAE encoders + a benign BMP encoder, fused by RFDM.

    Branches, in this order: ``mpae:victim``, ``mpae:aux0``, … (role "mpae"), then ``bmp`` (role
    "bmp", always last: :meth:`detection_score` relies on it). As in the paper (§4.1.1) and the
    authors' code (``train_down_singleE.py``), every task trains its own light head on each frozen
    tuned encoder; ``joint_heads=True`` instead keeps the head tuned with the encoder for tasks on D_f.

    Defaults reproduce the authors' code, which made the paper's tables: PGD-10 (ε 0.03, step
    0.007, no random start) with CE on encoder+head, and L_f in its label-aware form on head
    *logits* (``lf_on="logits"``, ``lf_label_aware=True``); the paper's Eq. 5–6 on encoder
    features is ``lf_on="features"``, ``lf_label_aware=False``. ``adversary="generator"`` follows
    Algorithm 1 instead: one downstream-agnostic attack (default ``advencoder``) is fitted on the
    clean victim with D_f's images, and its fixed x + G(x) (D_adv) tunes every MPAE encoder.

    Ablations (Table 5, Fig. S2): ``adversarial_tuning=False`` keeps the public encoders as they are;
    ``num_auxiliaries`` (default: all given; 0 = Table 5's "no MPAD branch"); ``use_mpae_victim``;
    ``use_bmp``; ``lambda_f=0`` drops L_f.

    BMP-Branch (``bmp``): ``"ssl"`` pretrains an encoder with ``bmp_method`` (SimCLR) for
    ``bmp_epochs`` on D_f's images (labels are never passed; the paper gives no epochs, so 100 is our
    default and CPU suites write a few); ``"checkpoint"`` loads the solo-learn file
    ``bmp_checkpoint`` through the ``solo-learn`` encoder source with ``bmp_checkpoint_params``
    (default: the manifest's ``simclr-cifar10``, the authors' BMP, pinned by its sha256 —
    ``run --download`` fetches it into ``bmp_checkpoint``); ``"public"`` is the clean victim.
    """

    name = "zepad"
    inference_params = ("ensemble", "fuse_on", "detection_threshold", "mpae_confidence")
    path_params = ("bmp_checkpoint",)

    class Options(TuningOptions):
        presets = {
            "protocol": {
                "corrected": {**CORRECTED, "fuse_on": "probabilities", "bmp": "ssl"},
                "authors": {
                    "freeze_bn": False,
                    "pgd_ce_term": True,
                    "pgd_input": "raw",
                    "fuse_on": "logits",
                    "bmp": "checkpoint",
                },
            }
        }

        lambda_f: float = Field(
            20.0, ge=0, description="weight λ of the distribution loss L_f (Eq. 3; 0 drops it)"
        )
        lf_on: Literal[CHOICES["lf_on"]] = Field(
            "logits",
            description='what L_f compares: head "logits" (authors\' code) or encoder "features" (Eq. 5–6)',
        )
        lf_label_aware: bool = Field(
            True, description="weigh L_f per sample by its clean CE (the authors' code; false: Eq. 5–6)"
        )
        adversary: Literal[CHOICES["adversary"]] = Field(
            "pgd",
            description='tuning adversary: "pgd" on encoder+head (the authors\' code), or "generator": one '
            "downstream-agnostic attack fitted on the clean victim (Algorithm 1)",
        )
        eps: Budget = Field(0.03, description="L∞ budget of the tuning adversary, pixels")
        step_size: Budget = Field(0.007, description="PGD step size, pixels")
        steps: int = Field(10, ge=0, description="PGD steps")
        random_start: bool = Field(False, description="start PGD from uniform noise in the ε-ball")
        generator: str = Field(
            "advencoder",
            description='attack plugin of adversary = "generator" (an outside one: load its module through '
            "[suite] plugins)",
        )
        generator_params: dict[str, Any] = Field(default_factory=dict, description="that attack's parameters")
        selection: Literal[CHOICES["selection"]] = Field(
            "last",
            description='tuned epoch kept: the "last", or the best robust accuracy on a held-out split of '
            'D_f ("val"); never test data',
        )
        joint_heads: bool = Field(
            False,
            description="keep the head tuned with each MPAE encoder for tasks on D_f (else tasks train one)",
        )
        val_fraction: float = Field(
            0.1, gt=0, lt=1, description='share of D_f held out when selection = "val"'
        )
        adversarial_tuning: bool = Field(
            True, description="tune the MPAE encoders (false: the public ones as is)"
        )
        use_mpae_victim: bool = Field(True, description="include the tuned victim in the MPAE-Branch")
        num_auxiliaries: int | None = Field(
            None,
            ge=0,
            description="auxiliary encoders in the MPAE-Branch (unset: all the suite gives; 0: none)",
        )
        use_bmp: bool = Field(True, description="include the BMP-Branch (needed for detection)")
        bmp: Literal[CHOICES["bmp"]] | None = Field(
            None,
            description='BMP encoder: "ssl" (pretrained on D_f images, the paper), "checkpoint" (the file '
            'bmp_checkpoint: the authors\' code) or the "public" victim',
        )
        bmp_checkpoint: str | None = Field(
            None,
            description='solo-learn file of the BMP encoder when bmp = "checkpoint" (relative: from the '
            "suite's folder; run --download fetches the manifest's file there)",
        )
        bmp_checkpoint_params: dict[str, Any] = Field(
            default_factory=lambda: _manifest_source(AUTHORS_BMP),
            description="that file's solo-learn encoder-source params (paper, arch, arch_params, "
            "normalisation, sha256, input_size); default: the manifest's simclr-cifar10, the authors' BMP",
        )
        bmp_method: Literal[BMP_METHODS] = Field(
            "simclr", description="SSL method of the BMP encoder (no labels)"
        )
        bmp_arch: str | None = Field(None, description="BMP backbone (unset: the victim's)")
        bmp_arch_params: dict[str, Any] | None = Field(
            None, description="BMP backbone parameters (unset: the victim's when the arch is the victim's)"
        )
        bmp_epochs: int = Field(100, ge=1, description="BMP pretraining epochs (the paper gives none)")
        bmp_batch_size: int = Field(256, ge=1, description="BMP pretraining batch size")
        bmp_recipe: dict[str, Any] = Field(
            default_factory=dict, description="recipe parameters of the BMP method (e.g. temperature)"
        )
        ensemble: Literal[CHOICES["ensemble"]] = Field(
            "rfdm",
            description='branch weights: "rfdm" (Eq. 7–8), "average", or "entropy" (Table S3)',
        )
        fuse_on: Literal[CHOICES["fuse_on"]] | None = Field(
            None,
            description="what RFDM's weighted sum runs over: branch logits (authors' code) or probabilities",
        )
        detection_threshold: float = Field(
            0.1, description="a DAE when MPAE − BMP confidence exceeds it (Sec. 5.4)"
        )
        mpae_confidence: Literal[CHOICES["mpae_confidence"]] = Field(
            "max", description="MPAE-Branch confidence: the max or the mean over its encoders"
        )

        @model_validator(mode="after")
        def _has_a_branch(self) -> ZePAD.Options:
            if not (self.use_mpae_victim or self.num_auxiliaries != 0 or self.use_bmp):
                raise ValueError("ZePAD needs a branch: use_mpae_victim, auxiliaries or use_bmp")
            return self

        @model_validator(mode="after")
        def _pinned_bmp(self) -> ZePAD.Options:
            unknown = sorted(set(self.bmp_checkpoint_params) - set(BMP_SOURCE_KEYS))
            if unknown:
                known = ", ".join(BMP_SOURCE_KEYS)
                raise ValueError(f"bmp_checkpoint_params: unknown {', '.join(unknown)}; known: {known}")
            if self.bmp == "checkpoint" and not self.bmp_checkpoint_params.get("sha256"):
                raise ValueError("bmp_checkpoint_params needs a sha256: it pins the BMP file (cache key)")
            return self

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.config = self.options.tuning()

    # ------------------------------------------------------------------ step 1: encoder preparation
    def fit(self, victim: Encoder, auxiliaries: list[Encoder], data: LabeledImages) -> DefendedModel:
        if self.num_auxiliaries is not None and self.num_auxiliaries > len(auxiliaries):
            raise UserError(
                f"zepad: num_auxiliaries={self.num_auxiliaries} but the victim has only "
                f"{len(auxiliaries)} auxiliary encoder(s) in the suite"
            )
        chosen = auxiliaries if self.num_auxiliaries is None else auxiliaries[: self.num_auxiliaries]
        publics = [("victim", victim)] if self.use_mpae_victim else []
        publics += [(f"aux{i}", a) for i, a in enumerate(chosen)]
        train, val = self._split(data)
        tune = self.adversarial_tuning and bool(publics)
        attack = self._fit_generator(victim, train) if tune and self.adversary == "generator" else None
        branches, info = [], {"history": {}, "selected_epoch": {}}
        for i, (name, public) in enumerate(publics):
            encoder = public.copy().to(self.ctx.device)
            if not tune:
                branches.append(Branch(f"mpae:{name}", "mpae", encoder.eval()))
                continue
            head, history, selected = self._tune(encoder, train, val, attack, self._seed(i + 1), name)
            joint = {"head": head, "head_data": data.name} if self.joint_heads else {}
            branches.append(Branch(f"mpae:{name}", "mpae", encoder, **joint))
            info["history"][name], info["selected_epoch"][name] = history, selected
        if self.use_bmp:
            branches.append(Branch("bmp", "bmp", self._bmp_encoder(victim, data)))
        if not branches:
            raise UserError("zepad: no branch left (no victim, no auxiliary encoder, no BMP)")
        return DefendedModel(branches, self, info)

    def _seed(self, offset: int) -> int:
        return self.ctx.seed * 1_000_003 + offset

    def _split(self, data: LabeledImages) -> tuple[LabeledImages, LabeledImages | None]:
        """D_f, or (train, val) stratified by label when the epoch is selected on validation data."""
        if self.selection == "last" or not self.adversarial_tuning:
            return data, None
        train_idx, val_idx = stratified_split(data.labels, self.val_fraction, self._seed(0))
        return data.subset(train_idx), data.subset(val_idx)

    def code_dependencies(self) -> list[type]:
        """The generator attack's class (Algorithm 1) and the ``solo-learn`` source of a checkpoint BMP:
        their code is part of the tuning's cache key."""
        classes = [self.ctx.plugin("attacks", self.generator)] if self.adversary == "generator" else []
        return classes + ([self.ctx.plugin("encoders", "solo-learn")] if self._loads_bmp() else [])

    def _loads_bmp(self) -> bool:
        return self.use_bmp and self.bmp == "checkpoint"

    def check(self) -> None:
        """A checkpoint BMP (``bmp = "checkpoint"``) names a file that exists."""
        if not self._loads_bmp():
            return
        if self.bmp_checkpoint is None:
            raise UserError(
                "zepad: bmp = 'checkpoint' (the authors' protocol: their BMP-Branch is the public solo-learn "
                f"file {self.bmp_checkpoint_params.get('paper', 'of bmp_checkpoint_params')}) needs "
                "bmp_checkpoint = PATH (`zepad-bench run SUITE --download` fetches it there) or bmp = 'ssl'"
            )
        if not Path(self.bmp_checkpoint).is_file():
            paper = self.bmp_checkpoint_params.get("paper")
            how = f"`zepad-bench run SUITE --download` fetches {paper} there" if paper else "bring that file"
            raise MissingData(
                f"{self.bmp_checkpoint}: BMP checkpoint not found (zepad, bmp = 'checkpoint'): {how}, "
                "or set bmp = 'ssl' (pretrained on D_f)"
            )

    def fetch(self) -> None:
        """``run --download``: fetch and verify the manifest's BMP file into ``bmp_checkpoint``."""
        paper = self.bmp_checkpoint_params.get("paper")
        if self._loads_bmp() and self.bmp_checkpoint and paper and not Path(self.bmp_checkpoint).is_file():
            fetch_paper_encoder(paper, Path(self.bmp_checkpoint))
        self.check()

    def _fit_generator(self, victim: Encoder, data: LabeledImages) -> Attack:
        """Algorithm 1's generator G: a downstream-agnostic attack fitted on the clean victim and D_f."""
        attack = self.ctx.plugin("attacks", self.generator)(eps=self.eps, **self.generator_params)
        attack.ctx = dataclasses.replace(self.ctx, records={}, on_record=None)
        torch.manual_seed(self._seed(0))
        images = UnlabeledBatches(data.images, self.config.batch_size, self._seed(0), self.ctx.device)
        attack.fit([victim.copy().to(self.ctx.device).eval()], images)
        return attack

    def _tune(
        self,
        encoder: Encoder,
        train: LabeledImages,
        val: LabeledImages | None,
        attack: Attack | None,
        seed: int,
        name: str,
    ) -> tuple[MLPHead, list[float], int]:
        """MPAE tuning (Eq. 3) of one encoder with a new head: returns the head, epoch losses, kept epoch."""
        torch.manual_seed(seed)
        model = EncoderWithHead(encoder, new_head(encoder, train, self.ctx.device))
        best: dict[str, Any] = {"epoch": self.config.epochs - 1, "accuracy": -1.0, "state": None}

        def keep_best(epoch: int, tuned: EncoderWithHead) -> None:
            accuracy = self._robust_accuracy(tuned, val, attack, seed)
            if accuracy > best["accuracy"]:
                best.update(epoch=epoch, accuracy=accuracy, state=copy.deepcopy(tuned.state_dict()))

        loss_fn = partial(self.tuning_loss, attack=attack, generator=self.ctx.generator(seed))
        history = adversarial_finetune(
            model,
            train,
            loss_fn,
            self.config,
            seed=seed,
            device=self.ctx.device,
            track=self.ctx.track,
            description=f"zepad: tune {name}",
            on_epoch_end=keep_best if val is not None else None,
        )
        if best["state"] is not None:
            model.load_state_dict(best["state"])
        model.eval()
        return model.head, history, int(best["epoch"])

    def tuning_loss(
        self,
        model: EncoderWithHead,
        x: Tensor,
        y: Tensor,
        attack: Attack | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Craft the adversarial batch, then return the training loss on it (what the optimiser steps on).

        With ``pgd_ce_term`` (PGD only) the loss also holds Σ_t CE at the PGD iterates (authors' leak).
        """
        iterates: list[Tensor] | None = [] if self.pgd_ce_term and attack is None else None
        extra = {} if iterates is None else {"iterates": iterates}  # overrides of `adversarial` may lack it
        x_adv = self.adversarial(model, x, y, attack, generator, **extra)
        # before the training forward, which moves BN statistics: the PGD saw the old ones
        leaked = iterate_ce(model, iterates, y, self.pgd_input) if iterates is not None else 0.0
        return self.objective(model, x, x_adv, y) + leaked

    def adversarial(
        self,
        model: EncoderWithHead,
        x: Tensor,
        y: Tensor,
        attack: Attack | None = None,
        generator: torch.Generator | None = None,
        iterates: list[Tensor] | None = None,
    ) -> Tensor:
        """x + δ: PGD maximising the CE of encoder+head (in eval mode), or the fitted generator's x + G(x)."""
        if attack is not None:
            with torch.no_grad():
                return attack.perturb(x).detach()
        with eval_mode(model), pgd_input_mode(model, self.pgd_input):
            return pgd(
                lambda xa: F.cross_entropy(model(xa), y),
                x,
                self.eps,
                self.step_size,
                self.steps,
                self.random_start,
                generator,
                iterates=iterates,
            )

    def objective(self, model: EncoderWithHead, x: Tensor, x_adv: Tensor, y: Tensor) -> Tensor:
        """L = L_c + λ·L_f (Eq. 3): CE on the adversarial batch (Eq. 4) plus the distribution loss (Eq. 5–6).

        The label-aware L_f weighs samples by their clean per-sample CE, not detached (authors' code).
        """
        adv_features = model.encoder(x_adv)
        adv_logits = model.head(adv_features)
        loss = F.cross_entropy(adv_logits, y)
        if self.lambda_f == 0:
            return loss
        features = model.encoder(x)
        logits = model.head(features)
        benign, adversarial = (logits, adv_logits) if self.lf_on == "logits" else (features, adv_features)
        if self.lf_label_aware:
            lf = distribution_loss(benign, adversarial, y, F.cross_entropy(logits, y, reduction="none"))
        else:
            lf = distribution_loss(benign, adversarial)
        return loss + self.lambda_f * lf

    def _robust_accuracy(
        self, model: EncoderWithHead, data: LabeledImages, attack: Attack | None, seed: int
    ) -> float:
        """Accuracy (%) under the tuning adversary on held-out D_f images (``selection="val"``)."""
        generator, correct = self.ctx.generator(seed), 0
        with eval_mode(model):
            for x, y in data.batches(self.config.batch_size):
                x, y = x.to(self.ctx.device), y.to(self.ctx.device)
                x_adv = self.adversarial(model, x, y, attack, generator)
                with torch.no_grad():
                    correct += (model(x_adv).argmax(1) == y).sum().item()
        return 100.0 * correct / len(data)

    def _bmp_encoder(self, victim: Encoder, data: LabeledImages) -> Encoder:
        """BMP-Branch: SSL pretraining on D_f's images alone (labels never passed), a checkpoint file
        (sha256-checked), or the clean victim."""
        if self.bmp == "public":
            return victim.copy().to(self.ctx.device).eval()
        if self.bmp == "checkpoint":
            self.check()
            params = {"path": self.bmp_checkpoint, **self.bmp_checkpoint_params}
            source = self.ctx.plugin("encoders", "solo-learn")(**params)
            source.ctx = self.ctx
            return source.build(None).to(self.ctx.device).eval()
        from zepad_bench.nn.ssl import pretrain

        arch = self.bmp_arch or victim.arch
        arch_params = self.bmp_arch_params
        if arch_params is None:
            arch_params = victim.arch_params if arch == victim.arch else {}
        spec = victim.spec()  # same input pipeline as the other branches, unless the recipe says otherwise
        pipeline = {"mean": spec["mean"], "std": spec["std"], "input_size": spec["input_size"]}
        encoder, _, _ = pretrain(
            self.bmp_method,
            data.images,
            arch=arch,
            arch_params=arch_params,
            epochs=self.bmp_epochs,
            batch_size=self.bmp_batch_size,
            seed=self._seed(0),
            device=self.ctx.device,
            track=self.ctx.track,
            **{**pipeline, **self.bmp_recipe},
        )
        return encoder.to(self.ctx.device).eval()

    # ------------------------------------------------------------------ step 2: RFDM and detection
    def fused_scores(self, logits: list[Tensor]) -> Tensor:
        """Σ_i W_i·y_i (Alg. 1 line 19) as class scores: over logits (authors' code) the fused logits;
        over softmax outputs (``fuse_on``) the fused log-probabilities log Σ_i W_i·p_i, computed as
        logsumexp_i(log W_i + log_softmax(y_i)) — no clamp, so gradients survive any logit margin."""
        log_probabilities = [torch.log_softmax(y.float(), dim=1) for y in logits]
        log_weights = ensemble_log_weights(log_probabilities, self.ensemble)
        if self.fuse_on == "logits":
            return sum(w.exp().unsqueeze(1) * y.float() for w, y in zip(log_weights, logits))
        return torch.stack([w.unsqueeze(1) + lp for w, lp in zip(log_weights, log_probabilities)]).logsumexp(
            0
        )

    def fuse(self, logits: list[Tensor]) -> Tensor:
        """Σ_i W_i·y_i: the fused logits, or (``fuse_on = "probabilities"``) the fused probabilities."""
        scores = self.fused_scores(logits)
        return scores if self.fuse_on == "logits" else scores.exp()

    def detection_score(self, probabilities: list[Tensor]) -> Tensor | None:
        """MPAE − BMP confidence per sample (Sec. 5.4): a DAE when it exceeds ``detection_threshold`` (0.1).

        Confidence is the maximum softmax probability; the MPAE-Branch's is the max (or mean, by
        ``mpae_confidence``) over its encoders; the BMP branch is the last. ``None`` without a BMP
        branch or without an MPAE encoder.
        """
        if not self.use_bmp or len(probabilities) < 2:
            return None
        m = torch.stack([p.max(dim=1).values for p in probabilities])
        mpae = m[:-1].max(dim=0).values if self.mpae_confidence == "max" else m[:-1].mean(dim=0)
        return mpae - m[-1]
