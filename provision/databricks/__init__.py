"""The one gateway to Databricks: the only package that imports ``databricks.sdk``.

Everything above it sees plain dicts (the SDK dataclasses' ``as_dict()`` shapes) and the
project's error family, so the planner stays pure and the CLI can render any failure.
The SDK is imported lazily: it costs about two seconds, and ``--help`` or a config error
must not pay for it.

- ``signin``: which workspace and identity (profile or variables, the pinned host), the
  first contact that fails fast, and the SDK's logs and retry notices;
- ``workspace``: ``Workspace``, every operation dbtwf sends, as plain dicts;
- ``mapping``: SDK and transport errors as the project's errors.
"""

from provision.databricks.signin import (
    FIRST_CONTACT_RETRY_SECONDS,
    connect,
    quiet_sdk_logs,
    watch_retries,
    while_importing_sdk,
)
from provision.databricks.workspace import Workspace

__all__ = [
    "FIRST_CONTACT_RETRY_SECONDS",
    "Workspace",
    "connect",
    "quiet_sdk_logs",
    "watch_retries",
    "while_importing_sdk",
]
