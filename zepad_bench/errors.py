"""User-facing errors: the CLI prints their message on one line, without a traceback.

The exit status tells the kinds apart: 2 for an error (a broken suite, a bad option), 3 when a valid
suite only lacks something this machine does not have yet (:class:`Missing`, printed as it is; an
error's lines are printed after ``error:``).
"""


class UserError(Exception):
    """Bad input from the user (suite file, data root, checkpoint, CLI option)."""

    exit_code = 2


class SuiteError(UserError):
    """A suite file is invalid; the message names the file, the key and what was expected."""

    def __init__(self, path, key: str, message: str):
        self.path, self.key = str(path), key
        where = f"{self.path}: {key}: " if key else f"{self.path}: "
        super().__init__(where + message)


class Missing(UserError):
    """Something a valid suite needs is not on this machine yet; the message says how to get it.

    Raise a subclass from a plugin's ``check()`` (or ``__init__``): the validator lists every missing
    item of a suite at once, apart from errors (a hint written as ``zepad-bench run SUITE --download``
    names the suite there).
    """

    exit_code = 3
    label = "missing"


class MissingData(Missing):
    """A dataset or checkpoint is not on disk (say whether ``run --download`` fetches it)."""

    label = "missing data"


class MissingPackage(Missing):
    """An optional package a plugin needs is not installed (say which extra installs it)."""

    label = "missing package"


class SuiteMissing(Missing):
    """Every missing item of one suite: ``(table key, the plugin's Missing error)`` pairs, one line each."""

    def __init__(self, path, items: list[tuple[str, Missing]]):
        self.path, self.items = str(path), list(items)
        lines = (f"{self.path}: {exc.label}: {key}: {exc}" for key, exc in self.items)
        super().__init__("\n".join(lines).replace("zepad-bench run SUITE", f"zepad-bench run {self.path}"))


class CellFailed(UserError):
    """One cell cannot produce a result (e.g. an attack broke the budget contract); others go on."""
