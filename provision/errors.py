"""One family of project errors. Only the CLI turns them into messages and exit codes."""

from __future__ import annotations


class DbtwfError(Exception):
    """Base of every error dbtwf reports to a user.

    ``message`` says what is wrong; ``hint`` says what to do about it. Both are shown as
    one or two lines by the CLI, without a traceback unless ``--debug``. ``details`` is
    evidence worth reading (a failed dbt step's log), shown above those two lines.
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, details: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details


class UsageError(DbtwfError):
    """Bad usage or bad input, caught before anything is written (exit 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """dbtwf.toml is missing, malformed or holds an invalid value (exit 2)."""


class UnknownNameError(UsageError):
    """The command line or dbtwf.toml names something that does not exist where it is looked
    up (a workflow, a task to depend on, a dbt job): bad input, found before any write (exit 2).
    Something that exists but stands in the way (a task key taken, a lock) is a ConflictError."""


class RemoteError(DbtwfError):
    """Databricks or dbt Cloud refused or failed an operation (exit 1)."""


class AuthError(RemoteError):
    """Credentials for Databricks or dbt Cloud were rejected (exit 1)."""


class NotFoundError(RemoteError):
    """A workflow, job or other remote object named by the user does not exist (exit 1)."""


class ConflictError(RemoteError):
    """The remote state forbids the change: a lock is held, a task key is taken, a name is ambiguous."""


class DeclinedError(DbtwfError):
    """The user answered no when asked to confirm: nothing was changed (exit 1, one plain line)."""


class RunFailedError(DbtwfError):
    """A workflow or dbt run ended in failure, cancellation or timeout (exit 1)."""


class RunInterruptedError(RunFailedError):
    """The user pressed Ctrl-C while `dbtwf run` waited; the Databricks run was cancelled (exit 1,
    as the contract has only 0/1/2 and `python -m runner` also exits 1 when interrupted)."""
