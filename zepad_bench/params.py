"""Plugin options: one pydantic declaration per plugin, read by validation, cache keys, errors,
``zepad-bench list --params``/``show`` and the generated parameter reference (docs/parameters.md).

A plugin declares its parameters as a nested ``Options`` model (recommended)::

    class PAP(UniversalAttack):
        class Options(UniversalAttack.Options):
            steps: int = Field(20000, ge=1, description="signed-gradient steps on δ")

and reads them as ``self.options.steps`` (also ``self.steps``). The old form — parameters in the
``__init__`` signature, help in ``param_help``, allowed values in ``Literal[...]`` annotations or
``param_choices``, ``extra_params`` for ``**extra`` — still works: :func:`options_model` derives the
same kind of model from it. Values are checked strictly (no ``"3"`` for an int, no ``1`` for
``true``); lists and tuples are interchangeable where a field takes either.
"""

from __future__ import annotations

import copy
import difflib
import functools
import inspect
import math
import re
import types
import typing
from collections.abc import Hashable, Mapping, Sequence
from fractions import Fraction
from typing import Annotated, Any, ClassVar, Literal, Union

import annotated_types
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    model_validator,
)


class ParamError(ValueError):
    """A parameter value breaks its declaration; the message is one line naming the rule broken."""


class Options(BaseModel):
    """Base of every plugin's options: strict types, unknown names rejected, frozen once validated.

    ``presets`` (class attribute) lets one parameter set others: ``{"protocol": {"authors":
    {"freeze_bn": False, …}, …}}`` fills every such parameter left unset (``None``) from the preset
    of the chosen value. ``extra_help`` says what extra names mean where ``model_config`` allows
    them (``extra="allow"``).
    """

    model_config = ConfigDict(
        strict=True, extra="forbid", frozen=True, allow_inf_nan=False, arbitrary_types_allowed=True
    )
    presets: ClassVar[dict[str, dict[Any, dict[str, Any]]]] = {}
    extra_help: ClassVar[str | None] = None

    @model_validator(mode="before")
    @classmethod
    def _prepare(cls, data: Any) -> Any:
        """Lists and tuples as each field declares them (TOML has lists only); presets filled in."""
        if not isinstance(data, Mapping):
            return data
        fields = cls.model_fields
        out = {k: _as_declared(fields[k].annotation, v) if k in fields else v for k, v in data.items()}
        for param, table in cls.presets.items():
            chosen = out.get(param, fields[param].default)
            preset = table.get(chosen, {}) if isinstance(chosen, Hashable) else {}
            out.update({k: v for k, v in preset.items() if out.get(k) is None})
        return out


def _args(annotation: Any) -> tuple[Any, ...]:
    """The alternatives of a union (or the annotation alone), ``Annotated`` unwrapped."""
    if typing.get_origin(annotation) is Annotated:
        return _args(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return tuple(a for arg in typing.get_args(annotation) for a in _args(arg))
    return (annotation,)


def _as_declared(annotation: Any, value: Any) -> Any:
    if not isinstance(value, list | tuple):
        return value
    origins = {typing.get_origin(a) or a for a in _args(annotation)}
    if tuple in origins and list not in origins:
        return tuple(value)
    if list in origins and tuple not in origins:
        return list(value)
    return value


# ---------------------------------------------------------------- budgets written as fractions


def parse_budget(value: Any) -> float:
    """``"10/255"`` → 10/255; a number in (0, 1] → itself; ``ValueError`` naming the rule otherwise."""
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+(\.\d+)?\s*(/\s*\d+(\.\d+)?\s*)?", value):
        try:
            eps = float(Fraction(value.replace(" ", "")))
        except ZeroDivisionError:
            raise ValueError(f"must have a non-zero denominator (got {value!r})") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        eps = float(value)
    else:
        raise ValueError(f'must be a number or a fraction like "10/255" (got {value!r})')
    if not eps > 0:
        raise ValueError(f"must be positive (got {value!r})")
    if eps > 1:
        raise ValueError(f"must be at most 1, in pixel units of [0, 1] images (got {value!r})")
    return eps


def _sha256(value: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise ValueError(f"must be 64 hex digits (got {value!r})")
    return value


Sha256 = Annotated[str, AfterValidator(_sha256)]
"""A sha256 digest: 64 hex digits."""
Budget = Annotated[float, BeforeValidator(parse_budget), Field(gt=0, le=1)]
"""A budget or step in (0, 1] pixel units; a suite may write it as a fraction string (``"8/255"``)."""


# ---------------------------------------------------------------- the model of a plugin class


@functools.cache
def options_model(cls: type) -> type[Options]:
    """The options model of plugin class ``cls``: its ``Options`` (declared on it or inherited), or,
    for the old form, a model derived from the ``__init__`` signatures below that declaration."""
    owner = next(k for k in cls.__mro__ if "Options" in vars(k))
    runner_args = set(getattr(cls, "runner_args", ()))
    fields: dict[str, Any] = {}
    closed = False
    for klass in cls.__mro__:
        if klass is owner:
            break
        if "__init__" not in vars(klass):
            continue
        init = vars(klass)["__init__"]
        hints = _hints(init)
        closed = True
        for p in list(inspect.signature(init).parameters.values())[1:]:
            if p.name in runner_args or p.kind is p.VAR_POSITIONAL:
                continue
            if p.kind is p.VAR_KEYWORD:
                closed = False
            elif p.name not in fields:
                fields[p.name] = _legacy_field(cls, p, hints.get(p.name, Any))
        if closed:
            break
    if not fields:
        _check_names(cls, owner.Options)
        return owner.Options
    base: type[Options] = Options if closed else owner.Options
    extra = getattr(cls, "extra_params", None)
    if extra:  # the old form's `extra_params`: extra names accepted, and what they are
        config = ConfigDict(extra="allow")
        base = type(f"{cls.__name__}Extra", (base,), {"model_config": config, "extra_help": extra})
    return create_model(  # type: ignore[call-overload]
        f"{cls.__name__}Options", __base__=base, __module__=cls.__module__, **fields
    )


def with_defaults(model: type[Options], **defaults: Any) -> type[Options]:
    """A subclass of ``model`` whose fields ``defaults`` default to other values (types, ranges and
    help unchanged): e.g. TRADES's inner maximisation over PGD-AT's options."""
    fields = {}
    for name, value in defaults.items():
        field = copy.copy(model.model_fields[name])
        field.default = value
        fields[name] = (field.annotation, field)
    return create_model(model.__name__, __base__=model, __module__=model.__module__, **fields)  # type: ignore[call-overload]


def _hints(func: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func)
    except Exception:  # an annotation naming a TYPE_CHECKING-only type: leave it unchecked
        return {}


def _legacy_field(cls: type, p: inspect.Parameter, hint: Any) -> tuple[Any, Any]:
    """An old-form ``__init__`` parameter as a pydantic field (help from ``param_help``, allowed
    values from ``param_choices`` or a ``Literal`` annotation)."""
    helps: dict[str, str] = {}
    choices: dict[str, Sequence[Any]] = {}
    for klass in reversed(cls.__mro__):
        helps.update(vars(klass).get("param_help", {}))
        choices.update(vars(klass).get("param_choices", {}))
    if p.name in choices:
        hint = Literal[tuple(choices[p.name])]  # type: ignore[valid-type]
        if p.default is None:
            hint = hint | None
    try:
        create_model("Probe", __base__=Options, x=(hint, None))
    except Exception:  # a type pydantic cannot check: accept any value
        hint = Any
    default = ... if p.default is inspect.Parameter.empty else p.default
    return hint, Field(default, description=helps.get(p.name, ""))


def _check_names(cls: type, model: type[Options]) -> None:
    """An option may not hide a method or property of its plugin (options are also attributes)."""
    for name in model.model_fields:
        if name in ("name", "ctx", "options"):
            raise TypeError(f"{cls.__name__}: {name!r} is the plugin's own; an option cannot take that name")
        member = inspect.getattr_static(cls, name, None)
        if callable(member) or isinstance(member, property | classmethod | staticmethod):
            raise TypeError(f"{cls.__name__}: option {name!r} hides the plugin's {name!r} member; rename it")
        if name in getattr(cls, "runner_args", ()):
            raise TypeError(f"{cls.__name__}: option {name!r} is an argument the runner passes")


# ---------------------------------------------------------------- validation and its one-line message


def validate(cls: type, params: Mapping[str, Any]) -> Options:
    """``params`` checked against ``cls``'s options; :class:`ParamError` names the first rule broken."""
    return parse(options_model(cls), params)


def build(cls: type, params: Mapping[str, Any], *args: Any) -> Any:
    """The host's one construction path: ``params`` validated against ``cls``'s options (old-form
    plugins included, before their ``__init__`` runs), then ``cls(*args, **params)``."""
    validate(cls, params)
    return cls(*args, **params)


def parse(model: type[Options], params: Mapping[str, Any]) -> Options:
    """``params`` validated by ``model``; :class:`ParamError` (one line) on the first rule broken."""
    try:
        return model.model_validate(dict(params))
    except ValidationError as exc:
        errors = exc.errors()  # a misspelled name first: it explains the "missing" one it was meant as
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        raise ParamError(rule_broken(model, first, params)) from None


BOUNDS = {"greater_than": ">", "greater_than_equal": "≥", "less_than": "<", "less_than_equal": "≤"}
TYPE_WORDS = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    tuple: "a list",
    dict: "a table",
    type(None): "unset",
}
KIND_WORDS = {f"{t.__name__.replace('str', 'string')}_type": words for t, words in TYPE_WORDS.items()}
"""Pydantic's error types (``int_type``, ``string_type``, …) in words."""


def rule_broken(model: type[Options], error: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    """One pydantic error as one line: the parameter, the rule it breaks, the value given."""
    kind, ctx, fields = error["type"], error.get("ctx") or {}, model.model_fields
    name = str(error["loc"][0]) if error["loc"] else ""
    items = [i for i in error["loc"][1:] if isinstance(i, int)]  # (strings are union member tags)
    where = name + "".join(f"[{i}]" for i in items)
    got = error.get("input")
    if kind == "extra_forbidden":
        close = did_you_mean(name, list(fields))
        return f"unknown parameter {name!r}" + (close or f"; accepted: {', '.join(fields) or 'none'}")
    if kind == "missing":
        if items:
            return f"{name} has too few items (got {params.get(name)!r})"
        return f"missing required parameter {name!r}"
    if kind in BOUNDS:
        return f"{where} must be {BOUNDS[kind]} {_bound(next(iter(ctx.values())))} (got {got!r})"
    if kind == "literal_error" and name in fields and not items:
        allowed = ", ".join(map(_toml, choices_of(fields[name].annotation)))
        return f"{where} must be one of {allowed} (got {got!r})"
    if kind in ("too_short", "too_long"):
        return f"{where} has {'too few' if kind == 'too_short' else 'too many'} items (got {got!r})"
    if kind == "finite_number":
        return f"{where} must be a finite number (got {got!r})"
    if kind in ("value_error", "assertion_error"):
        message = str(ctx.get("error", error["msg"]))
        return (
            f"{where} {message}"
            if where and message.startswith("must")
            else ": ".join(filter(None, [where, message]))
        )
    if kind in KIND_WORDS or kind.endswith("_type"):
        expected = (
            type_words(fields[name].annotation)
            if name in fields and not items
            else KIND_WORDS.get(kind, kind)
        )
        return f"{where} must be {expected} (got {type(got).__name__} {got!r})"
    return ": ".join(filter(None, [where, error["msg"]]))


def type_words(annotation: Any) -> str:
    """What a value of ``annotation`` is, in words (``int | None`` → "an integer or unset")."""
    words = []
    for arg in _args(annotation):
        origin = typing.get_origin(arg) or arg
        if origin is Literal:
            word = "one of " + ", ".join(map(_toml, typing.get_args(arg)))
        elif isinstance(origin, type) and issubclass(origin, Mapping):
            word = TYPE_WORDS[dict]
        else:
            word = TYPE_WORDS.get(origin, getattr(origin, "__name__", str(origin)))
        words.append(word)
    return " or ".join(dict.fromkeys(words))


# ---------------------------------------------------------------- what the host reads


def resolved(cls: type, params: Mapping[str, Any], drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """The validated options with every default (and preset) filled in, minus ``drop``: the material
    of cache keys. Writing a default explicitly or not gives the same result."""
    values = validate(cls, params).model_dump()
    return {k: _plain(v) for k, v in sorted(values.items()) if k not in drop}


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def choices_of(annotation: Any) -> tuple[Any, ...]:
    """The allowed values of a ``Literal`` annotation (``None`` kept when the field may be unset)."""
    return tuple(
        v for arg in _args(annotation) if typing.get_origin(arg) is Literal for v in typing.get_args(arg)
    )


def describe(cls: type) -> list[dict[str, str]]:
    """Each option of ``cls`` as display strings: name, type, range, default, help (for the manifest)."""
    model = options_model(cls)
    preset_by = {
        name: param for param, by in model.presets.items() for table in by.values() for name in table
    }
    out = []
    for name, field in model.model_fields.items():
        if name in preset_by and field.default is None:  # "by protocol (corrected: true, authors: false)"
            by = model.presets[preset_by[name]]
            values = ", ".join(
                f"{choice}: {_toml(table[name])}" for choice, table in by.items() if name in table
            )
            default = f"by {preset_by[name]} ({values})"
        else:
            default = (
                "required" if field.is_required() else _toml(field.get_default(call_default_factory=True))
            )
        out.append(
            {
                "name": name,
                "type": _type_text(field.annotation),
                "range": _range_text(field.metadata),
                "default": default,
                "help": field.description or "",
            }
        )
    if model.model_config.get("extra") == "allow":
        out.append({"name": "…", "type": "", "range": "", "default": "", "help": model.extra_help or ""})
    return out


def type_and_range(param: Mapping[str, str]) -> str:
    """``int ≥ 1 | unset``: the type with its range, "unset" last."""
    kind, rest = param["type"], ""
    if kind.endswith(" | unset"):
        kind, rest = kind[: -len(" | unset")], " | unset"
    return " ".join(filter(None, [kind, param["range"]])) + rest


def describe_line(param: Mapping[str, str]) -> str:
    """One parameter on one line: ``steps: int ≥ 1 = 20000 — help``."""
    if param["name"] == "…":
        return f"… (other names): {param['help']}"
    default = " (required)" if param["default"] == "required" else f" = {param['default']}"
    return f"{param['name']}: {type_and_range(param)}{default}" + (
        f" — {param['help']}" if param["help"] else ""
    )


def _type_text(annotation: Any) -> str:
    parts = []
    for arg in _args(annotation):
        origin, args = typing.get_origin(arg), typing.get_args(arg)
        if origin is Literal:
            parts += [_toml(v) for v in args]
        elif arg is type(None):
            parts.append("unset")
        elif origin in (list, tuple) or (isinstance(origin, type) and issubclass(origin, Sequence)):
            inner = [a for a in args if a is not Ellipsis]
            parts.append(
                f"list[{', '.join(dict.fromkeys(_type_text(a) for a in inner))}]" if inner else "list"
            )
        elif origin is dict or (isinstance(origin, type) and issubclass(origin, Mapping)) or arg is dict:
            parts.append("table")
        else:
            parts.append("any" if arg is Any else getattr(arg, "__name__", str(arg)))
    return " | ".join(dict.fromkeys(parts))


def _range_text(metadata: list[Any]) -> str:
    symbols = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤"}
    parts = []
    for item in metadata:
        for attr, symbol in symbols.items():
            if isinstance(item, getattr(annotated_types, attr.capitalize())):
                parts.append(f"{symbol} {_bound(getattr(item, attr))}")
    return ", ".join(parts)


def _bound(value: Any) -> str:
    """A range's bound: ``0`` rather than ``0.0``."""
    return _toml(int(value) if isinstance(value, float) and value.is_integer() else value)


def _toml(value: Any) -> str:
    """A value as a suite writes it: ``true``, ``"sign"``, ``[0.4, 0.6]``, 8/255 as ``"8/255"``."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float):
        n = value * 255
        if value and abs(n - round(n)) < 1e-9 and len(repr(value)) > 8:
            return f'"{round(n)}/255"'
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return repr(value)


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` when a known name is close to ``name``, else ``""``."""
    close = difflib.get_close_matches(name, list(known), 1)
    return f" (did you mean {close[0]!r}?)" if close else ""
