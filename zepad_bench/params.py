"""Declared plugin parameters: one declaration per plugin, read by validation, cache keys, errors,
``zepad-bench list --params`` and ``zepad-bench show``.

The declaration is derived from the plugin's ``__init__`` signatures (names, defaults, annotations;
``Literal[...]`` annotations are the allowed values) along its class hierarchy, completed by the
class attribute ``param_help`` (one line per parameter) and, where an annotation cannot say it,
``param_choices``. A plugin whose ``__init__`` takes ``**extra`` keyword parameters and means it
(e.g. the ``ssl`` source's recipe) says so with ``extra_params = "<what they are>"``; otherwise an
unknown name is rejected before the plugin is constructed, whether or not it calls
``super().__init__``.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union

HOST_MODULE = "zepad_bench.interfaces"
REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True)
class Param:
    """A declared parameter: name, type (as written), default (``REQUIRED``: none), allowed values, help."""

    name: str
    type: str
    default: Any = REQUIRED
    choices: tuple[Any, ...] | None = None
    help: str = ""
    hint: Any = Any

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def describe(self) -> str:
        default = "required" if self.required else f"default {self.default!r}"
        allowed = f"; one of {', '.join(map(repr, self.choices))}" if self.choices else ""
        return f"{self.name}: {self.type} ({default}{allowed})" + (f" — {self.help}" if self.help else "")


@dataclass(frozen=True)
class Declaration:
    """A plugin's parameters, and what its extra keyword parameters are (``None``: none accepted)."""

    params: dict[str, Param]
    extra: str | None = None


def _hints(func: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func)
    except Exception:  # an annotation naming a TYPE_CHECKING-only type: keep the strings
        return {}


def _choices(hint: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    if typing.get_origin(hint) in (Union, types.UnionType):
        values = [c for arg in typing.get_args(hint) for c in (_choices(arg) or ())]
        return tuple(values) or None
    return None


@functools.cache
def declaration(cls: type) -> Declaration:
    """The parameters ``cls`` takes (an attack's ``eps`` is the runner's, not the suite table's)."""
    from zepad_bench.interfaces import Attack

    runner_params = ("eps",) if issubclass(cls, Attack) else ()
    params: dict[str, Param] = {}
    helps: dict[str, str] = {}
    choices: dict[str, tuple[Any, ...]] = {}
    for klass in reversed(cls.__mro__):
        helps.update(vars(klass).get("param_help", {}))
        choices.update({k: tuple(v) for k, v in vars(klass).get("param_choices", {}).items()})
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass is object:
            continue
        init = vars(klass)["__init__"]
        hints = _hints(init)
        open_ = False
        for p in inspect.signature(init).parameters.values():
            if p.name == "self" or p.name in runner_params or p.kind is p.VAR_POSITIONAL:
                continue
            if p.kind is p.VAR_KEYWORD:
                open_ = True
                continue
            if p.name in params:
                continue
            hint = hints.get(p.name, Any)
            written = p.annotation if isinstance(p.annotation, str) else _type_name(p.annotation)
            if typing.get_origin(hint) is Literal:  # the allowed values say the rest
                written = " | ".join(dict.fromkeys(type(v).__name__ for v in typing.get_args(hint)))
            params[p.name] = Param(
                p.name,
                written if p.annotation is not REQUIRED else "any",
                p.default,
                choices.get(p.name) or _choices(hint),
                helps.get(p.name, ""),
                hint,
            )
        if not open_ or klass.__module__ == HOST_MODULE:
            break  # a closed signature, or the host base (which rejects unknown names)
    return Declaration(params, getattr(cls, "extra_params", None))


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether a suite value fits ``hint`` (TOML types: bool, int, float, str, list, dict)."""
    if hint is Any or hint is inspect.Parameter.empty or isinstance(hint, str):
        return True
    origin = typing.get_origin(hint)
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    target = origin or hint
    if target is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if target is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if target in (list, tuple) or (
        isinstance(target, type) and issubclass(target, Sequence) and target is not str
    ):
        return isinstance(value, (list, tuple))
    if isinstance(target, type) and issubclass(target, Mapping):
        return isinstance(value, dict)
    if isinstance(target, type):
        return isinstance(value, target)
    return True


def check(cls: type, params: dict[str, Any]) -> None:
    """Reject unknown or missing names (``TypeError``), wrongly typed values and values outside the
    allowed ones (``ValueError``), naming the parameter."""
    decl = declaration(cls)
    if decl.extra is None:
        unknown = sorted(set(params) - set(decl.params))
        if unknown:
            hints = [difflib.get_close_matches(n, decl.params, 1) for n in unknown]
            said = ", ".join(
                f"{n!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for n, h in zip(unknown, hints)
            )
            raise TypeError(f"unknown parameter {said}; accepted: {', '.join(decl.params) or 'none'}")
    missing = [p.name for p in decl.params.values() if p.required and p.name not in params]
    if missing:
        raise TypeError(f"missing required parameter {', '.join(map(repr, missing))}")
    for name, value in params.items():
        p = decl.params.get(name)
        if p is None:
            continue
        if p.choices and value not in p.choices:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, p.choices))}, got {value!r}")
        if not _type_ok(value, p.hint):
            raise ValueError(f"{name} must be {p.type}, got {type(value).__name__} {value!r}")


def checked_init(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap a plugin's ``__init__`` so that constructing it (by the runner or directly) first checks the
    given parameters against the declaration — whether or not the plugin calls ``super().__init__``."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        owner = next(k for k in type(self).__mro__ if "__init__" in vars(k))
        if vars(owner)["__init__"] is __init__:  # the outermost constructor only
            try:
                bound = signature.bind(self, *args, **kwargs).arguments
            except TypeError:
                bound = {}  # let the call itself say what is wrong
            given: dict[str, Any] = {}
            for name, value in list(bound.items())[1:]:
                kind = signature.parameters[name].kind
                if kind is inspect.Parameter.VAR_KEYWORD:
                    given.update(value)
                elif kind is not inspect.Parameter.VAR_POSITIONAL:
                    given[name] = value
            declared = declaration(type(self))
            check(type(self), {k: v for k, v in given.items() if k in declared.params or k != "eps"})
        init(self, *args, **kwargs)

    return __init__


def resolved(cls: type, params: dict[str, Any], drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """``params`` with every declared default filled in (the material of cache keys), minus ``drop``."""
    decl = declaration(cls)
    out = {n: p.default for n, p in decl.params.items() if not p.required}
    out.update(params)
    return {k: _plain(v) for k, v in sorted(out.items()) if k not in drop}


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def describe(cls: type) -> list[str]:
    """One line per parameter (for ``list --params`` and ``show``)."""
    decl = declaration(cls)
    lines = [p.describe() for p in decl.params.values()]
    if decl.extra:
        lines.append(f"**extra: {decl.extra}")
    return lines
