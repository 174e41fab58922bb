"""SDK and transport errors as the project's error family, saying what failed and what to do."""

from __future__ import annotations

from provision.errors import AuthError, ConflictError, DbtwfError, NotFoundError, RemoteError

AUTH_HINT = (
    "set DATABRICKS_HOST and DATABRICKS_TOKEN, or name a profile of ~/.databrickscfg with "
    "databricks_profile in dbtwf.toml (run `databricks auth login` to create one)"
)


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def map_error(error: Exception, what: str, host: str) -> DbtwfError:
    """One SDK or transport error as a project error that says what failed and what to do."""
    from databricks.sdk import errors
    from databricks.sdk.errors.base import DatabricksError

    message = f"{what} failed: {first_line(error)}"
    # A wrong or expired token gets 403 "Invalid access token.", not 401: it is not a missing permission.
    denied = isinstance(error, errors.PermissionDenied)
    invalid_token = denied and "invalid access token" in first_line(error).lower()
    if isinstance(error, errors.Unauthenticated) or invalid_token:
        return AuthError(f"Databricks at {host} rejected the credentials: {what}", AUTH_HINT)
    if isinstance(error, errors.PermissionDenied):
        return RemoteError(
            f"permission denied on Databricks: {what}",
            "ask a workspace admin for the permission, or use a profile whose user holds it",
        )
    if isinstance(error, errors.NotFound):
        return NotFoundError(message)
    if isinstance(error, errors.ResourceConflict):
        return ConflictError(message)
    if isinstance(error, DatabricksError):
        return RemoteError(message)
    return RemoteError(f"cannot reach Databricks at {host}: {what}: {first_line(error)}")


def is_missing(error: Exception) -> bool:
    """Whether an SDK error means "no such object" (jobs/get answers 400 for a deleted job)."""
    from databricks.sdk import errors

    if isinstance(error, errors.NotFound):
        return True
    return isinstance(error, errors.InvalidParameterValue) and "does not exist" in str(error)
