"""The paper's encoders manifest (``reference/paper_encoders.json``) and verified file downloads.

``zepad-bench run --download`` fetches a ``solo-learn`` encoder table's ``paper = "<id>"`` file into
its ``path`` from the first source marked fetchable, checking size and sha256 before the file takes
its final name. Sources that can no longer be reached say so in the manifest; for those the encoder
is rebuilt in the run instead (``plugin = "ssl"``, ``recipe = "solo-learn"``).
"""

from __future__ import annotations

import functools
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from zepad_bench.errors import UserError

MANIFEST_PATH = Path(__file__).parent / "reference" / "paper_encoders.json"
CHUNK = 1 << 20


@functools.cache
def _manifest(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text())["encoders"]


def paper_encoders() -> dict[str, dict[str, Any]]:
    """Manifest id (e.g. ``"simclr-cifar10"``) → entry (method, pretrain, arch, sha256, sources, …)."""
    return _manifest(str(MANIFEST_PATH))


def paper_encoder(id_: str) -> dict[str, Any]:
    """One manifest entry; ValueError naming the known ids otherwise."""
    entries = paper_encoders()
    if id_ not in entries:
        raise ValueError(f"unknown paper encoder {id_!r}; known: {', '.join(sorted(entries))}")
    return entries[id_]


def fetchable_sources(entry: dict[str, Any]) -> list[str]:
    return [s["url"] for s in entry["sources"] if s["status"].startswith("fetchable")]


def download_verified(url: str, dest: Path, sha256: str, size: int | None = None, label: str = "") -> None:
    """Stream ``url`` into ``dest`` (via ``dest.partial``) with progress; keep it only if the byte count
    and sha256 match. Any failure is a one-line UserError and leaves no ``dest``."""
    import hashlib

    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    digest, done = hashlib.sha256(), 0
    try:
        with (
            urllib.request.urlopen(url) as response,
            open(partial, "wb") as out,
            Progress(
                *Progress.get_default_columns()[:-1], DownloadColumn(), TransferSpeedColumn(), transient=True
            ) as progress,
        ):
            task = progress.add_task(label or dest.name, total=size)
            while block := response.read(CHUNK):
                out.write(block)
                digest.update(block)
                done += len(block)
                progress.update(task, completed=done)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        raise UserError(f"{label or dest.name}: download from {url} failed ({exc})") from None
    problem = None
    if size is not None and done != size:
        problem = f"{done} bytes, expected {size}"
    elif digest.hexdigest() != sha256.lower():
        problem = f"sha256 {digest.hexdigest()}, expected {sha256.lower()}"
    if problem:
        partial.unlink(missing_ok=True)
        raise UserError(
            f"{label or dest.name}: download from {url} rejected ({problem}): corrupt or replaced"
        )
    os.replace(partial, dest)


def fetch_paper_encoder(id_: str, dest: Path) -> bool:
    """Make ``dest`` the manifest's file ``id_``; True if downloaded, False if already there and valid."""
    from zepad_bench.nn.checkpoints import file_sha256

    entry = paper_encoder(id_)
    urls = fetchable_sources(entry)
    if not urls or not entry.get("sha256"):
        reasons = "; ".join(s["status"].split(":")[0] + " " + s["url"] for s in entry["sources"])
        raise UserError(
            f"paper encoder {id_}: no source zepad-bench can fetch ({reasons}); rebuild it in the run with "
            f'plugin = "ssl", method = "{entry["method"]}", recipe = "solo-learn", '
            f'recipe_dataset = "{entry["pretrain"]}", or bring the file to {dest}'
        )
    if dest.is_file() and file_sha256(dest) == entry["sha256"]:
        return False
    errors = []
    for url in urls:
        try:
            download_verified(url, dest, entry["sha256"], entry.get("size"), label=f"paper encoder {id_}")
            return True
        except UserError as exc:
            errors.append(str(exc))
    raise UserError(" | ".join(errors))
