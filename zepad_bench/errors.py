"""User-facing errors: the CLI prints their message on one line, without a traceback."""


class UserError(Exception):
    """Bad input from the user (suite file, data root, checkpoint, CLI option)."""


class SuiteError(UserError):
    """A suite file is invalid; the message names the file, the key and what was expected."""

    def __init__(self, path, key: str, message: str):
        self.path, self.key = str(path), key
        where = f"{self.path}: {key}: " if key else f"{self.path}: "
        super().__init__(where + message)


class CellFailed(UserError):
    """One cell cannot produce a result (e.g. an attack broke the budget contract); others go on."""

    stage: str | None = None
    """The kind of stage that failed (set by the runner; stored with the failed cell)."""
