"""The dbt Cloud API token: from the environment, the OS keyring, or a hidden prompt.

Never from argv, never written to a file by dbtwf: it reaches Databricks only in the body of
`secrets/put`. `keyring` is imported lazily (its backend discovery costs start-up time).
"""

from __future__ import annotations

import getpass
import hashlib
import os
import secrets
import sys
from typing import Any

from provision.errors import UsageError

TOKEN_ENV = "DBT_CLOUD_API_TOKEN"  # noqa: S105 - the variable name, not a token
KEYRING_SERVICE = "dbtwf"
KEYRING_USER = "dbt-cloud-api-token"

# Prefixes dbt Cloud puts on its tokens (service tokens `dbtc_`, personal `dbtu_`). They say
# which kind of token is stored and carry no secret, so `show` may print them.
_KNOWN_PREFIXES = ("dbtc_", "dbtu_")
_ENV_HINT = (
    f"set {TOKEN_ENV} in the environment (for CI or a headless server), "
    "or run `dbtwf token set` on a machine with an OS keyring"
)


def _no_keyring(reason: str) -> UsageError:
    return UsageError(f"no usable OS keyring to keep the dbt Cloud token: {reason}", hint=_ENV_HINT)


def _backend() -> Any:
    """The keyring backend, if it is one we may use; UsageError otherwise.

    keyring picks keyrings.alt's plaintext file by itself when no OS keyring is around
    (priority < 1, "not recommended"). Storing the token in a plaintext file behind the
    user's back is what we must not do, so such a backend counts only when the user chose
    it (PYTHON_KEYRING_BACKEND or keyringrc.cfg).
    """
    import keyring
    import keyring.core

    try:
        backend = keyring.get_keyring()
    except Exception as error:  # noqa: BLE001 - any backend failure means "no keyring"
        raise _no_keyring(f"{type(error).__name__}: {error}") from None
    name = f"{type(backend).__module__}.{type(backend).__qualname__}"
    if name in ("keyring.backends.fail.Keyring", "keyring.backends.null.Keyring"):
        raise _no_keyring(f"the backend is {name}")
    chosen = bool(os.environ.get("PYTHON_KEYRING_BACKEND")) or keyring.core.load_config() is not None
    if not chosen and float(backend.priority) < 1:
        raise _no_keyring(f"only the non-recommended backend {name} is available (it stores plaintext)")
    return backend


def keyring_backend_name() -> str:
    """The usable keyring backend's class name; UsageError when there is none."""
    backend = _backend()
    return f"{type(backend).__module__}.{type(backend).__qualname__}"


def keyring_token() -> str | None:
    """The token stored in the OS keyring, None when none is stored.

    Raises UsageError when there is no usable keyring backend.
    """
    import keyring.errors

    backend = _backend()
    try:
        value = backend.get_password(KEYRING_SERVICE, KEYRING_USER)
    except keyring.errors.KeyringError as error:
        raise _no_keyring(f"{type(error).__name__}: {error}") from None
    value = (value or "").strip()
    return value or None


def store_token(token: str) -> None:
    """Keep ``token`` (stripped) in the OS keyring; UsageError when empty or no keyring."""
    import keyring.errors

    backend = _backend()
    value = clean_token(token)
    try:
        backend.set_password(KEYRING_SERVICE, KEYRING_USER, value)
    except keyring.errors.KeyringError as error:
        raise _no_keyring(f"{type(error).__name__}: {error}") from None


def delete_token() -> bool:
    """Remove the stored token. False when none was stored."""
    import keyring.errors

    backend = _backend()
    try:
        if backend.get_password(KEYRING_SERVICE, KEYRING_USER) is None:
            return False
        backend.delete_password(KEYRING_SERVICE, KEYRING_USER)
    except keyring.errors.PasswordDeleteError:
        return False
    except keyring.errors.KeyringError as error:
        raise _no_keyring(f"{type(error).__name__}: {error}") from None
    return True


def clean_token(token: str) -> str:
    """The token without surrounding whitespace (a pasted newline); UsageError when empty."""
    value = token.strip()
    if not value:
        raise UsageError("the dbt Cloud token is empty", hint="paste the whole token, then press Enter")
    if any(char.isspace() for char in value):
        raise UsageError(
            "the dbt Cloud token contains whitespace",
            hint="paste only the token itself, as dbt Cloud shows it once on creation",
        )
    return value


def mask(token: str) -> str:
    """What `token show` prints: a known kind prefix and the length, never any secret part.

    Not even the last characters: the length and `dbtc_`/`dbtu_` are enough to tell tokens
    apart by kind and spot a truncated paste, and every shown character narrows the secret.
    """
    prefix = next((known for known in _KNOWN_PREFIXES if token.startswith(known)), "")
    return f"{prefix}…({len(token)} chars)"


def token_source() -> tuple[str, str] | None:
    """(token, where it came from) without prompting: the environment, then the keyring."""
    from_env = os.environ.get(TOKEN_ENV, "").strip()
    if from_env:
        return from_env, f"the environment variable {TOKEN_ENV}"
    stored = keyring_token()
    return (stored, "the OS keyring") if stored else None


def resolve_token(*, interactive: bool) -> str:
    """The dbt Cloud token: ``DBT_CLOUD_API_TOKEN``, then the OS keyring, then a hidden prompt
    (only when ``interactive`` and stdin is a terminal). UsageError (exit 2) when none."""
    from provision.output import register_secret

    keyring_problem: str | None = None
    try:
        found = token_source()
    except UsageError as error:  # no keyring (and no variable): a prompt may still do
        found, keyring_problem = None, error.message
    if found is not None:
        register_secret(found[0])
        return found[0]
    if interactive and sys.stdin.isatty():
        token = clean_token(getpass.getpass("dbt Cloud API token (input hidden): "))
        register_secret(token)
        return token
    message = f"no dbt Cloud token: {TOKEN_ENV} is not set and the OS keyring holds none"
    if keyring_problem:
        message = f"no dbt Cloud token: {TOKEN_ENV} is not set ({keyring_problem})"
    raise UsageError(message, hint=f"export {TOKEN_ENV}=... or run `dbtwf token set`")


def new_salt() -> str:
    """A fresh random salt for :func:`token_fingerprint`."""
    return secrets.token_hex(16)


def token_fingerprint(token: str, salt: str) -> str:
    """Salted SHA-256 of the token: lets the state record notice a changed token without
    keeping the token. The salt (random per environment) keeps equal tokens from having
    equal fingerprints and rules out precomputed tables."""
    return hashlib.sha256(f"{salt}\0{token}".encode()).hexdigest()
