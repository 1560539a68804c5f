"""A plugin's code version: its provider (distribution and version) plus a hash of the source it runs.

The source hash covers the plugin class's module and, transitively, every module it imports
(anywhere in the file, lazy imports included) from its own top-level package or from
``zepad_bench``. Sources are hashed as their compiled code without docstrings and line numbers,
so comments, formatting and documentation do not invalidate the cache, while any change to code
does — for built-ins, editable installs and ad-hoc modules alike (an installed wheel's files only
change with its version).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import inspect
import re
import sys
import types
from pathlib import Path

from zepad_bench.errors import UserError

HOST_PACKAGE = "zepad_bench"


def _code_digest(code: types.CodeType, out: hashlib._Hash) -> None:
    """Feed the instructions, names and constants of ``code`` (not its line numbers) into ``out``."""
    out.update(code.co_code)
    out.update(repr((code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars)).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _code_digest(const, out)
        else:
            out.update(repr(const).encode())


def _origin(module: str) -> Path | None:
    """The source file of ``module``, found under its (imported) top-level package without importing it."""
    top, _, rest = module.partition(".")
    path = getattr(sys.modules.get(top), "__file__", None)
    if path is None:  # locating a top-level module does not run it
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            return None
        path = spec.origin if spec is not None else None
    if path is None:
        return None
    path = Path(path)
    if not rest:
        return path if path.suffix == ".py" else None
    if path.name != "__init__.py":
        return None
    base = path.parent.joinpath(*rest.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


IMPORT = re.compile(
    r"^[ \t]*(?:from[ \t]+(\.*[\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n#]*)|import[ \t]+([^\n#]*))", re.M
)


def _imports(source: str, module: str, is_package: bool) -> set[str]:
    """Absolute names of the modules ``source`` imports (``from a import b`` also yields ``a.b``)."""
    names: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for base, imported, plain in IMPORT.findall(source):
        if plain:
            names.update(n.split(" as ")[0].strip() for n in plain.split(","))
            continue
        level = len(base) - len(base.lstrip("."))
        base = base.lstrip(".")
        if level:
            parts = package.split(".")
            anchor = ".".join(parts[: len(parts) - level + 1])
            base = f"{anchor}.{base}" if base else anchor
        names.add(base)
        for name in imported.strip("()").split(","):
            name = name.split(" as ")[0].strip()
            if name:
                names.add(f"{base}.{name}")
    return names


def _stat(module: str) -> tuple[Path, int, int] | None:
    """(source file, mtime_ns, size) of ``module``, or ``None`` when it has no source file."""
    path = _origin(module)
    if path is None:
        return None
    stat = path.stat()
    return path, stat.st_mtime_ns, stat.st_size


@functools.cache
def _file_imports(module: str, path: Path, mtime_ns: int, size: int) -> tuple[str, ...]:
    """The modules ``path`` imports, read from its text (a file that does not compile still has them)."""
    return tuple(sorted(_imports(path.read_text(), module, path.name == "__init__.py")))


@functools.cache
def _file_digest(path: Path, mtime_ns: int, size: int) -> str:
    """sha256 of the file's compiled code without docstrings (compiled under its real path, so a syntax
    error names the file and line)."""
    digest = hashlib.sha256()
    try:
        # optimize=2 drops docstrings (and asserts): documentation edits keep the cache valid
        code = compile(path.read_text(), str(path), "exec", dont_inherit=True, optimize=2)
    except SyntaxError as exc:
        raise UserError(f"{exc.filename}:{exc.lineno}: SyntaxError: {exc.msg} (plugin code)") from None
    _code_digest(code, digest)
    return digest.hexdigest()


def closure(module: str) -> dict[str, Path]:
    """``module`` and every module it reaches in its own top-level package and ``zepad_bench``, with
    their source files (found by name from the import statements' text; nothing is imported or compiled)."""
    scope = {module.partition(".")[0], HOST_PACKAGE}
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen or name.partition(".")[0] not in scope:
            continue
        found = _stat(name)
        if found is None:
            continue
        seen[name] = found[0]
        todo.extend(_file_imports(name, *found))
    return seen


def source_hash(module: str) -> str:
    """Hash of the compiled code (without docstrings or line numbers) of :func:`closure` of ``module``."""
    digests = []
    for name, path in sorted(closure(module).items()):
        stat = path.stat()
        digests.append(f"{name}:{_file_digest(path, stat.st_mtime_ns, stat.st_size)}")
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def files_stamp(module: str) -> list[tuple[str, int, int]]:
    """(path, mtime_ns, size) of every file of :func:`closure` of ``module`` (any edit, docs included)."""
    out = []
    for _, path in sorted(closure(module).items()):
        stat = path.stat()
        out.append((str(path), stat.st_mtime_ns, stat.st_size))
    return out


def code_version(cls: type, provider: object) -> str:
    """``"<provider> <source hash[:16]>"`` for a plugin class (provider: the registry's entry)."""
    module = inspect.getmodule(cls)
    name = module.__name__ if module is not None else cls.__module__
    return f"{provider} src:{source_hash(name)[:16]}"
