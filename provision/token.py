"""The dbt Cloud API token: from the environment, the OS keyring, or a hidden prompt.

Never from argv, never written to a file by dbtwf: it reaches Databricks only in the body of
`secrets/put`. `keyring` is imported lazily (its backend discovery costs start-up time).
"""

from __future__ import annotations

import getpass
import os
import sys
from dataclasses import dataclass
from typing import Any

from provision.errors import UsageError

TOKEN_ENV = "DBT_CLOUD_API_TOKEN"  # noqa: S105 - the variable name, not a token
KEYRING_SERVICE = "dbtwf"
KEYRING_USER = "dbt-cloud-api-token"

# Prefixes dbt Cloud puts on its tokens (service tokens `dbtc_`, personal `dbtu_`). They say
# which kind of token is stored and carry no secret, so `show` may print them.
_KNOWN_PREFIXES = ("dbtc_", "dbtu_")
#: How to put the token in the environment without it reaching shell history.
READ_TOKEN_HINT = f"read -rs {TOKEN_ENV} && export {TOKEN_ENV}"
#: What to do when no token is found: never `export VAR=value`, which leaves it in shell history.
NO_TOKEN_HINT = f"run `dbtwf token set`, or `{READ_TOKEN_HINT}` and paste it"
_KEYRING_HINT = (
    "choose an OS keyring backend with PYTHON_KEYRING_BACKEND (or keyringrc.cfg) and run `dbtwf token "
    f"set`, or on a headless machine keep the token in {TOKEN_ENV} (`{READ_TOKEN_HINT}`)"
)


def _no_keyring(reason: str) -> UsageError:
    return UsageError(f"no usable OS keyring to keep the dbt Cloud token: {reason}", hint=_KEYRING_HINT)


def _class_name(backend: Any) -> str:
    return f"{type(backend).__module__}.{type(backend).__qualname__}"


def _recommended(backend: Any) -> bool:
    """keyring's own rule: priority 1 or more is a real OS keyring; below is "not recommended"
    (keyrings.alt's files and the like)."""
    try:
        return float(backend.priority) >= 1
    except Exception:  # noqa: BLE001 - a backend that cannot tell its priority is not usable
        return False


def _chosen_by() -> str | None:
    """Where the user chose the backend: PYTHON_KEYRING_BACKEND, keyringrc.cfg, or nowhere."""
    import keyring.core

    if os.environ.get("PYTHON_KEYRING_BACKEND"):
        return "PYTHON_KEYRING_BACKEND"
    try:
        return "keyringrc.cfg" if keyring.core.load_config() is not None else None
    except Exception:  # noqa: BLE001 - an unreadable keyringrc chose nothing usable
        return None


@dataclass(frozen=True)
class Keyring:
    """The keyring backend dbtwf may use, and how to name it to the user."""

    backend: Any
    name: str
    #: A real OS keyring (keyring rates it recommended); False only for a backend the user
    #: chose explicitly (``chosen_by``) although it is not one.
    os_keyring: bool
    chosen_by: str | None = None

    @property
    def description(self) -> str:
        if self.os_keyring:
            return f"the OS keyring ({self.name})"
        kind = "a plaintext file" if "plaintext" in self.name.lower() else "not an OS keyring"
        return f"the keyring backend {self.name} ({kind}, chosen by {self.chosen_by})"

    @property
    def warning(self) -> str | None:
        """What to tell the user each time the token is stored in a backend that is not an OS keyring."""
        if self.os_keyring:
            return None
        return (
            f"{self.name}, chosen by {self.chosen_by}, is not an OS keyring: anyone who can read its "
            f"file can read the token; prefer an OS keyring, or {TOKEN_ENV} on a headless machine"
        )


def _backend() -> Keyring:
    """The keyring backend, if it is one we may use; UsageError otherwise.

    keyring picks keyrings.alt's plaintext file by itself when no OS keyring is around
    (priority < 1, "not recommended"), and its chainer writes to the first of its members that
    takes the write, which may be such a file too. Storing the token in a plaintext file behind
    the user's back is what we must not do, so a non-recommended backend counts only when the
    user chose that very backend (PYTHON_KEYRING_BACKEND or keyringrc.cfg), and a chainer only
    when one of its members is an OS keyring (members are tried by priority, highest first).
    """
    import keyring
    from keyring.backends.chainer import ChainerBackend

    try:
        backend = keyring.get_keyring()
    except Exception as error:  # noqa: BLE001 - any backend failure means "no keyring"
        raise _no_keyring(f"{type(error).__name__}: {error}") from None
    name = _class_name(backend)
    if name in ("keyring.backends.fail.Keyring", "keyring.backends.null.Keyring"):
        raise _no_keyring(f"the backend is {name}")
    chosen_by = _chosen_by()
    if isinstance(backend, ChainerBackend):
        try:
            members = list(backend.backends)
        except Exception as error:  # noqa: BLE001 - a chainer that cannot list its members is unusable
            raise _no_keyring(f"keyring's chainer failed: {type(error).__name__}: {error}") from None
        first_os_keyring = next((member for member in members if _recommended(member)), None)
        if first_os_keyring is None:
            chained = ", ".join(_class_name(member) for member in members) or "no backend"
            raise _no_keyring(
                f"keyring's chainer {name} holds {chained}, none of them an OS keyring (the token "
                "would land in a plaintext file)"
            )
        return Keyring(backend, f"{_class_name(first_os_keyring)} via {name}", True, chosen_by)
    if _recommended(backend):
        return Keyring(backend, name, True, chosen_by)
    if chosen_by is None:
        raise _no_keyring(f"only the non-recommended backend {name} is available (it stores plaintext)")
    return Keyring(backend, name, False, chosen_by)


def usable_keyring() -> Keyring:
    """The keyring backend the token would be kept in; UsageError when there is none."""
    return _backend()


def keyring_backend_name() -> str:
    """The usable keyring backend's class name; UsageError when there is none."""
    return _backend().name


def keyring_token() -> str | None:
    """The token stored in the keyring, None when none is stored.

    Raises UsageError when there is no usable keyring backend.
    """
    found = _keyring_token()
    return found[0] if found else None


def _keyring_token() -> tuple[str, Keyring] | None:
    import keyring.errors

    chosen = _backend()
    try:
        value = chosen.backend.get_password(KEYRING_SERVICE, KEYRING_USER)
    except keyring.errors.KeyringError as error:
        raise _no_keyring(f"{type(error).__name__}: {error}") from None
    value = (value or "").strip()
    return (value, chosen) if value else None


def store_token(token: str) -> Keyring:
    """Keep ``token`` (stripped) in the keyring; UsageError when empty or no keyring.
    Returns where it went (see :attr:`Keyring.warning` for a backend that is not an OS keyring)."""
    import keyring.errors

    chosen = _backend()
    value = clean_token(token)
    try:
        chosen.backend.set_password(KEYRING_SERVICE, KEYRING_USER, value)
    except keyring.errors.KeyringError as error:
        raise _no_keyring(f"{type(error).__name__}: {error}") from None
    return chosen


def delete_token() -> bool:
    """Remove the stored token. False when none was stored."""
    import keyring.errors

    backend = _backend().backend
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
    stored = _keyring_token()
    return (stored[0], stored[1].description) if stored else None


def resolve_token(*, interactive: bool) -> str:
    """The dbt Cloud token: ``DBT_CLOUD_API_TOKEN``, then the OS keyring, then a hidden prompt
    (only when ``interactive`` and stdin is a terminal). UsageError (exit 2) when none."""
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
    message = f"no dbt Cloud token: {TOKEN_ENV} is not set and the keyring holds none"
    if keyring_problem:
        message = f"no dbt Cloud token: {TOKEN_ENV} is not set ({keyring_problem})"
    raise UsageError(message, hint=NO_TOKEN_HINT)


# -- keeping it out of every output ---------------------------------------------------------

_REDACTED = "***"
# Values shorter than this could match ordinary words; real tokens are far longer.
_MIN_SECRET_LENGTH = 8
_secrets: set[str] = set()


def register_secret(value: str) -> None:
    """Remember a secret (the dbt token once resolved) so :func:`redact` hides it."""
    if len(value) >= _MIN_SECRET_LENGTH:
        _secrets.add(value)


def redact(text: str) -> str:
    """``text`` with every known secret replaced by ``***``."""
    known = set(_secrets)
    from_env = os.environ.get(TOKEN_ENV, "").strip()
    if len(from_env) >= _MIN_SECRET_LENGTH:
        known.add(from_env)
    for secret in sorted(known, key=len, reverse=True):
        text = text.replace(secret, _REDACTED)
    return text
