"""Which environment a command acts on, and which workspace each environment acts on.

`select_environment` picks the environment of `--env` (or the only one, or `dev`);
`check_collisions` refuses two environments of one file that would write, and destroy, the same
secret, notebook, state record or workflow in the same workspace.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from provision.errors import ConfigError
from provision.model import Config, Environment, normalize_host
from provision.names import quoted

DATABRICKS_HOST_ENVVAR = "DATABRICKS_HOST"
DATABRICKS_PROFILE_ENVVAR = "DATABRICKS_CONFIG_PROFILE"
DATABRICKS_CONFIG_FILE_ENVVAR = "DATABRICKS_CONFIG_FILE"


def databricks_config_file() -> Path:
    """Where the Databricks profiles live: DATABRICKS_CONFIG_FILE, else ~/.databrickscfg (as the SDK)."""
    return Path(os.environ.get(DATABRICKS_CONFIG_FILE_ENVVAR) or "~/.databrickscfg").expanduser()


def read_databricks_profile(name: str) -> dict[str, str] | None:
    """One profile's settings as the SDK reads them (its own keys, `[DEFAULT]` not merged in,
    values raw), or None when the file or the profile is missing or unreadable."""
    import configparser

    # A default_section nobody names keeps [DEFAULT] an ordinary section, as the SDK treats it.
    parser = configparser.ConfigParser(default_section="\x00none", interpolation=None)
    try:
        parser.read(databricks_config_file(), encoding="utf-8")
    except (OSError, UnicodeDecodeError, configparser.Error):
        return None
    if not parser.has_section(name):
        return None
    return dict(parser.items(name))


def _workspace_keys(env: Environment, profiles: dict[str, dict[str, str] | None]) -> dict[str, str]:
    """What identifies the workspace an environment acts on, each key with how to say it: two
    environments that share a key share a workspace (same profile, same host, or both on the
    DATABRICKS_* variables). A pinned host is the workspace of an environment on the variables
    (connect() refuses any other)."""
    keys: dict[str, str] = {}

    def add_host(host: str | None) -> None:
        if host:
            keys[f"host {normalize_host(host)}"] = f"workspace {normalize_host(host)}"

    add_host(env.databricks_host)
    profile = env.databricks_profile
    if profile is None and env.databricks_host is None:
        # On the variables and not pinned: wherever they point, now or in the next shell.
        keys["env"] = "the DATABRICKS_* environment variables"
        add_host(os.environ.get(DATABRICKS_HOST_ENVVAR, "").strip() or None)
        profile = os.environ.get(DATABRICKS_PROFILE_ENVVAR, "").strip() or None
    if profile is not None:
        keys[f"profile {profile}"] = f"profile {profile!r}"
        if profile not in profiles:
            profiles[profile] = read_databricks_profile(profile)
        add_host((profiles[profile] or {}).get("host"))
    return keys


def _workspace_path(path: str) -> str:
    """`/Workspace/Shared/x` and `/Shared/x` name the same workspace object."""
    return path.removeprefix("/Workspace") if path.startswith("/Workspace/") else path


def _owned_names(env: Environment) -> list[tuple[str, object, str, str]]:
    """What an environment writes and later deletes: (what, comparable key, as shown, the key to change)."""
    return [
        (
            "secret",
            (env.secret_scope.casefold(), env.secret_key),  # scope names are case-insensitive
            f"{env.secret_scope}/{env.secret_key}",
            "secret_scope or secret_key",
        ),
        ("notebook", _workspace_path(env.notebook_path), env.notebook_path, "notebook_path"),
        ("state record", _workspace_path(env.state_path), env.state_path, "notebook_path"),
        # jobs/list matches names case-insensitively
        ("workflow name", env.workflow_name.casefold(), env.workflow_name, "workflow_name"),
    ]


def check_collisions(path: Path, environments: Mapping[str, Environment]) -> None:
    """Refuse two environments in one workspace that would write (and destroy) the same secret,
    notebook, state record or workflow: `destroy` of one would delete the other's."""
    if len(environments) < 2:
        return
    profiles: dict[str, dict[str, str] | None] = {}
    keys = {name: _workspace_keys(env, profiles) for name, env in environments.items()}
    names = list(environments)
    for index, first in enumerate(names):
        for second in names[index + 1 :]:
            shared = [keys[first][key] for key in keys[first] if key in keys[second]]
            if not shared:
                continue
            theirs = {what: key for what, key, _, _ in _owned_names(environments[second])}
            for what, key, shown, setting in _owned_names(environments[first]):
                if theirs[what] == key:
                    raise ConfigError(
                        f"{path}: environments {quoted(first)} and {quoted(second)} both use the {what} "
                        f"{quoted(shown)} in the same workspace ({shared[0]})",
                        hint=f"give one of them its own {setting} (destroying one would delete the "
                        "other's), or point it at another workspace with databricks_profile",
                    )


# --- choosing an environment ------------------------------------------------------------


def select_environment(config: Config, name: str | None) -> Environment:
    """The named environment; without a name, the only one, else `dev`."""
    known = ", ".join(sorted(config.environments)) or "none"
    if name is not None:
        if name in config.environments:
            return config.environments[name]
        raise ConfigError(
            f"{config.path}: no environment {quoted(name)} (known: {known})",
            hint=f"pick one with --env, or add it with `dbtwf onboard --env {name} --dbt-job-url URL`",
        )
    if len(config.environments) == 1:
        return next(iter(config.environments.values()))
    if "dev" in config.environments:
        return config.environments["dev"]
    if not config.environments:
        raise ConfigError(
            f"{config.path}: no environments defined",
            hint="run `dbtwf onboard --dbt-job-url URL` to add one",
        )
    raise ConfigError(
        f"{config.path}: several environments and none is called dev (known: {known})",
        hint="pick one with --env NAME or DBTWF_ENV",
    )
