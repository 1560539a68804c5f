"""The encoder zoo: ``zepad-bench pretrain`` writes solo-learn-layout checkpoints, resumably.

solo-learn's own checkpoints are gone (2026), so the project rebuilds its zoo with the paper's SSL
methods. Kept free of module-level ``torch`` imports: the CLI imports this module at start-up.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import click

from zepad_bench.errors import UserError
from zepad_bench.nn.encoder_choices import NORMALISATIONS, SSL_METHODS, normalisation

RESUME_FILE = "resume.pt"


def checkpoint_name(method: str, dataset: str, arch: str, seed: int, epochs: int) -> str:
    """solo-learn-like file name, with the last (0-based) epoch as ``ep=``."""
    return f"{method}-{dataset}-{arch}-seed{seed}-ep={epochs - 1}.ckpt"


def _save_atomic(obj: Any, path: Path) -> None:
    import torch

    partial = path.with_name(path.name + ".partial")
    torch.save(obj, partial)
    os.replace(partial, path)


def pretrain_to_dir(
    out: str | os.PathLike,
    args: dict[str, Any],
    images: Any,
    labels: Any = None,
    *,
    device: str = "cpu",
    save_every_s: float = 300.0,
    max_steps: int | None = None,
    quiet: bool = False,
) -> Path | None:
    """Pretrain as ``args`` says into ``out`` and return the checkpoint path (``None`` if stopped early).

    ``args`` (written to ``args.json`` and the checkpoint's ``hyper_parameters``) holds method, dataset,
    arch, arch_params, epochs, batch_size, seed, normalisation, input_size and recipe overrides. The
    resume state ``out/resume.pt`` is saved every ``save_every_s`` seconds, on interruption and when
    ``max_steps`` steps of this call are done; a later call with the same args continues from it.
    """
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from zepad_bench.nn.checkpoints import save_solo_learn
    from zepad_bench.nn.ssl import Pretrainer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    final = out / checkpoint_name(args["method"], args["dataset"], args["arch"], args["seed"], args["epochs"])
    args_file = out / "args.json"
    if final.is_file() and args_file.is_file() and json.loads(args_file.read_text()).get("run") == args:
        click.echo(f"already complete: {final}")
        return final
    mean, std = normalisation(args["normalisation"])
    try:
        trainer = Pretrainer(
            args["method"],
            images,
            labels=labels,
            arch=args["arch"],
            arch_params=args["arch_params"],
            epochs=args["epochs"],
            batch_size=args["batch_size"],
            seed=args["seed"],
            device=device,
            mean=mean,
            std=std,
            input_size=args["input_size"],
            **args["recipe"],
        )
    except (ValueError, TypeError) as exc:
        raise UserError(f"pretrain: {exc}") from None
    resume = out / RESUME_FILE
    if resume.is_file():
        try:
            saved = torch.load(resume, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise UserError(
                f"{resume}: unreadable resume state ({type(exc).__name__}); delete it to restart"
            ) from None
        if saved.get("args") != args:
            raise UserError(f"{resume}: made by a different pretrain run; use another --out or delete it")
        trainer.load_state_dict(saved["trainer"])
        click.echo(f"resuming from step {trainer.step}/{trainer.total_steps}")

    def save_resume() -> None:
        _save_atomic({"args": args, "trainer": trainer.state_dict()}, resume)

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  {task.fields[ips]:,.0f} img/s"),
        TimeRemainingColumn(),
    )
    start_step, started, last_save = trainer.step, time.perf_counter(), time.perf_counter()
    with Progress(*columns, disable=quiet) as progress:
        task = progress.add_task(
            f"pretrain {args['method']} on {args['dataset']}",
            total=trainer.total_steps,
            completed=trainer.step,
            loss=float("nan"),
            ips=0.0,
        )
        try:
            for loss in trainer.steps():
                done = trainer.step - start_step
                ips = done * trainer.batch_size / max(time.perf_counter() - started, 1e-9)
                progress.update(task, completed=trainer.step, loss=loss, ips=ips)
                if max_steps is not None and done >= max_steps and not trainer.done:
                    save_resume()
                    click.echo(f"stopped at step {trainer.step}/{trainer.total_steps}; run again to resume")
                    return None
                if time.perf_counter() - last_save >= save_every_s and not trainer.done:
                    save_resume()
                    last_save = time.perf_counter()
        except KeyboardInterrupt:
            save_resume()
            raise
        except FloatingPointError as exc:
            raise UserError(f"pretrain: {exc}; try a lower lr") from None
    record = {
        "run": args,
        "method": args["method"],
        "backbone": {"name": args["arch"], "kwargs": args["arch_params"]},
        "recipe": trainer.cfg,
        "num_images": len(images),
        "effective_batch_size": trainer.batch_size,
        "steps": trainer.total_steps,
        "final_loss": trainer.history[-1],
        "mean": list(mean),
        "std": list(std),
    }
    digest = save_solo_learn(
        final, trainer.checkpoint_state_dict(), record, epoch=args["epochs"] - 1, global_step=trainer.step
    )
    resume.unlink(missing_ok=True)
    click.echo(f"wrote {final} (sha256 {digest})")
    return final


def _key_values(pairs: tuple[str, ...], what: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values are parsed as JSON when they can be (numbers, booleans), else kept."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"{what}: expected KEY=VALUE, got {pair!r}")
        try:
            result[key] = json.loads(value)
        except json.JSONDecodeError:
            result[key] = value
    return result


@click.command("pretrain")
@click.option("--method", required=True, type=click.Choice(SSL_METHODS), help="SSL method.")
@click.option("--dataset", required=True, help="Dataset plugin name (e.g. cifar10, photos).")
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder (one run)."
)
@click.option("--epochs", default=100, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--arch", default="resnet18", show_default=True, help="Backbone (resnet18 = solo-learn CIFAR stem)."
)
@click.option(
    "--arch-params", default="{}", show_default=True, help="Backbone params as JSON, e.g. '{\"width\": 16}'."
)
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=2))
@click.option(
    "--image-size",
    default=32,
    show_default=True,
    type=click.IntRange(min=8),
    help="Images load at this size.",
)
@click.option(
    "--input-size", default=None, type=click.IntRange(min=8), help="Encoder's own input size (resize)."
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--root", default=None, type=click.Path(file_okay=False), help="Dataset folder (the plugin's root=)."
)
@click.option(
    "--dataset-param", "-p", multiple=True, metavar="KEY=VALUE", help="Other dataset plugin params."
)
@click.option(
    "--recipe", "-r", multiple=True, metavar="KEY=VALUE", help="Override a recipe parameter (e.g. lr=0.3)."
)
@click.option("--normalisation", default="cifar", show_default=True, type=click.Choice(NORMALISATIONS))
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option(
    "--save-every", default=300.0, show_default=True, type=float, help="Seconds between resume saves."
)
@click.option(
    "--max-steps", default=None, type=click.IntRange(min=1), help="Stop after N steps (then resume)."
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def pretrain_command(
    method, dataset, out_dir, epochs, arch, arch_params, batch_size, image_size, input_size, seed, root,
    dataset_param, recipe, normalisation, device, save_every, max_steps, quiet,
):  # fmt: skip
    """Pretrain an encoder with an SSL METHOD on DATASET's train split into OUT (solo-learn layout).

    Writes OUT/<method>-<dataset>-<arch>-seed<S>-ep=<E-1>.ckpt, OUT/args.json and the checkpoint's
    .sha256; load it with the `solo-learn` encoder plugin. Interrupted runs resume from OUT/resume.pt.
    """
    import torch

    from zepad_bench.context import RunContext
    from zepad_bench.registry import load_registry

    try:
        parsed_arch_params = json.loads(arch_params)
    except json.JSONDecodeError as exc:
        raise UserError(f"--arch-params: not JSON ({exc.msg})") from None
    if not isinstance(parsed_arch_params, dict):
        raise UserError("--arch-params: expected a JSON object")
    params = _key_values(dataset_param, "--dataset-param")
    if root is not None:
        params["root"] = root
    source_cls = load_registry().get("datasets", dataset)
    try:
        source = source_cls(**params)
    except (TypeError, ValueError) as exc:
        raise UserError(f"dataset {dataset!r}: {exc}") from None
    source.ctx = RunContext(seed=seed, image_size=image_size)
    data = source.load("train", image_size, seed)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    args = {
        "method": method,
        "dataset": dataset,
        "dataset_params": params,
        "arch": arch,
        "arch_params": parsed_arch_params,
        "epochs": epochs,
        "batch_size": batch_size,
        "image_size": image_size,
        "input_size": input_size,
        "seed": seed,
        "normalisation": normalisation,
        "recipe": _key_values(recipe, "--recipe"),
    }
    pretrain_to_dir(
        out_dir,
        args,
        data.images,
        data.labels,
        device=device,
        save_every_s=save_every,
        max_steps=max_steps,
        quiet=quiet,
    )
