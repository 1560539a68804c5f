"""A plugin that cannot load, told in one line: who provides it, which entry point or module, the file
and line in the plugin's own code, and the error's first line."""

from __future__ import annotations

import importlib
import importlib.util
import traceback
from dataclasses import dataclass
from pathlib import Path

import pluggy

from zepad_bench.errors import UserError


@dataclass(frozen=True)
class BrokenPlugin:
    """An installed plugin skipped because importing it or calling its hooks raised."""

    provider: str  # distribution and version, or the module path of an ad-hoc module
    source: str  # "entry point NAME = MODULE", or "module MODULE"
    location: str  # "FILE:LINE" in the plugin's code ("" when unknown)
    error: str  # "ExceptionType: first line of its message"

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"plugin {self.provider} ({self.source}) cannot load: {where}{self.error}"

    @classmethod
    def of(cls, exc: BaseException, provider: str, source: str, module: str) -> BrokenPlugin:
        return cls(provider, source, locate(exc, module), first_line(exc))


class PluginLoadError(UserError):
    """A plugin module a suite (or ``load_registry(modules)``) asked for cannot load."""

    def __init__(self, broken: BrokenPlugin):
        self.broken = broken
        super().__init__(str(broken))


def first_line(exc: BaseException) -> str:
    """``"TypeName: first line"`` (a SyntaxError's own message, without Python's file suffix)."""
    text = exc.msg if isinstance(exc, SyntaxError) and exc.msg else str(exc)
    line = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {line}".rstrip(": ")


def _package_root(module: str) -> Path | None:
    """The folder of ``module``'s top-level package (or its file, for a top-level module), unimported."""
    try:
        spec = importlib.util.find_spec(module.partition(".")[0])
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        return None
    origin = Path(spec.origin)
    return origin.parent if spec.submodule_search_locations else origin


def locate(exc: BaseException, module: str) -> str:
    """``FILE:LINE`` where ``exc`` arose: a syntax error's own position, else the innermost frame of the
    traceback inside ``module``'s package (else the innermost frame with a real file)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    if isinstance(exc, ModuleNotFoundError) and exc.name and f"{module}.".startswith(f"{exc.name}."):
        return ""  # the plugin's module itself is not there: no line of it to show
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not _machinery(f.filename)]
    root = _package_root(module)
    own = [f for f in frames if root is not None and _within(Path(f.filename), root)]
    frame = (own or frames or [None])[-1]
    return f"{frame.filename}:{frame.lineno}" if frame is not None else ""


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


_MACHINERY = tuple(Path(m.__file__).parent for m in (importlib, pluggy)) + (Path(__file__).parent,)


def _machinery(filename: str) -> bool:
    """Frames of the import system, pluggy or zepad-bench's loader: never the plugin's line."""
    return filename.startswith("<") or any(_within(Path(filename), root) for root in _MACHINERY)
