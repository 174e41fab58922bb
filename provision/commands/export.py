"""`dbtwf export bundle`: the config's environments as a Databricks Asset Bundle folder.

Offline: it reads dbtwf.toml (and a profile's host from the Databricks config file), never the
workspace, and needs no token (the bundle never holds it).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from provision.commands import shell
from provision.commands.shell import DbtwfTyper
from provision.errors import DbtwfError, UsageError

app = DbtwfTyper(
    name="export",
    cls=TyperGroup,
    help="Write what dbtwf deploys in another tool's format (a Databricks Asset Bundle).",
    epilog="Examples:\n\n  dbtwf export bundle\n\n  dbtwf export bundle --env prod --out prod-bundle",
    no_args_is_help=True,
)

BUNDLE_EPILOG = (
    "Examples:\n\n  dbtwf export bundle                       (every environment, into ./dbtwf-bundle)\n\n"
    "  dbtwf export bundle --env staging --env prod --out bundle\n\n"
    "Then, in the folder, to take over what dbtwf deployed: databricks bundle deployment bind "
    "dbt_cloud_jobs JOB_ID -t prod (and dbt_cloud_token_scope SCOPE, only a scope dbtwf created), then "
    "databricks bundle deploy "
    "-t prod; a deploy without the bind makes a second workflow. Never writes the dbt Cloud token; "
    "needs no workspace access. The README says how to hand a deployed environment over."
)


@app.command("bundle", epilog=BUNDLE_EPILOG)
def bundle_command(
    ctx: typer.Context,
    env_names: Annotated[
        list[str] | None,
        typer.Option(
            "--env",
            "-e",
            help="An environment to export (repeat for several; default: every environment of the config).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="The folder to write the bundle into.", file_okay=False),
    ] = Path("dbtwf-bundle"),
    name: Annotated[
        str,
        typer.Option(
            "--name",
            help="The bundle's name: its folder in the workspace is ~/.bundle/NAME/TARGET, so give "
            "each bundle deployed by the same identity its own.",
        ),
    ] = "dbtwf",
    force: Annotated[
        bool,
        typer.Option("--force", help="Write into a folder that is not empty (its other files are kept)."),
    ] = False,
) -> None:
    """Write the environments as a Databricks Asset Bundle: databricks.yml (one target each,
    with the workflow and the secret scope) and each environment's runner notebook."""
    from provision.bundle import BUNDLE_FILE, BUNDLE_NAME_PATTERN, bundle_files
    from provision.environments import read_databricks_profile, select_environment
    from provision.output import note, say

    if not BUNDLE_NAME_PATTERN.fullmatch(name):
        raise UsageError(
            f"--name {name!r}: use letters, digits, '-', '_' and '.' (at most 100, a letter or digit first)"
        )
    options = shell.settings(ctx)
    config = shell.load_config(options)
    # --env after the command (repeatable) wins; `dbtwf --env E export bundle` picks E.
    names = list(env_names or ([options.env_name] if _typed_before(ctx) and options.env_name else []))
    environments = [select_environment(config, name) for name in dict.fromkeys(names)] or list(
        config.environments.values()
    )
    if not environments:
        select_environment(config, None)  # the config's own "no environments defined" error
    profiles = {env.databricks_profile for env in environments if env.databricks_profile}
    hosts = {name: (read_databricks_profile(name) or {}).get("host") for name in profiles}
    files = bundle_files(environments, hosts, name)
    _check_out(out, force)
    _check_no_links(out, files)
    for relative, text in files.items():
        path = out / relative
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as error:
            raise DbtwfError(
                f"could not write {path}: {error.strerror or error}", "pass another --out"
            ) from None
    say(f"wrote {out / BUNDLE_FILE} with target(s) {', '.join(env.name for env in environments)}")
    for env in environments:
        if not (env.databricks_host or env.databricks_profile):
            note(
                f"target {env.name!r} names no workspace: the Databricks CLI will use its default "
                "(DATABRICKS_HOST or the DEFAULT profile); set databricks_host in dbtwf.toml to pin it"
            )
    # A dbt_platform environment exports its job alone: no scope, no secret to fill.
    where = "; ".join(
        f"{env.name}: {env.secret_scope} {env.secret_key}" for env in environments if env.uses_notebook
    )
    if where:
        note(
            "the token is not in the bundle: where a scope holds none yet, store it with "
            f"`databricks secrets put-secret SCOPE KEY` at its hidden prompt ({where})"
        )
    first = environments[0]
    if first.uses_notebook:
        note(
            "bind the scope too (databricks bundle deployment bind dbt_cloud_token_scope "
            f"{first.secret_scope} -t {first.name}) only if dbtwf created it and it holds nothing else: "
            "bundle destroy deletes a bound scope with every secret in it; otherwise delete its "
            f"secret_scopes resource from {BUNDLE_FILE}"
        )
    note(
        f"next: cd {shlex.quote(str(out))}; to take over what dbtwf deployed, bind first (databricks bundle "
        f"deployment bind dbt_cloud_jobs <job id> -t {first.name}), then databricks bundle deploy "
        f"-t {first.name}: a deploy without the bind makes a second workflow (README: Handing an "
        "environment to Databricks Asset Bundles)"
    )


def _typed_before(ctx: typer.Context) -> bool:
    """Whether --env was typed before the command (not taken from DBTWF_ENV, which picks the
    environment of commands acting on one; an export takes every environment unless told)."""
    root = ctx.find_root()
    source = root.get_parameter_source("env")
    return source is not None and source.name == "COMMANDLINE"


def _check_no_links(out: Path, files: dict[str, str]) -> None:
    """Refuses a file the export writes, or a folder on its way, that is a symbolic link: writing
    would follow it and overwrite whatever it points to, maybe a file outside the bundle."""
    for relative in files:
        path = out
        for part in Path(relative).parts:
            path = path / part
            if path.is_symlink():
                raise UsageError(
                    f"{path} is a symbolic link; nothing was written (writing would follow it)",
                    hint="remove the link, or pass another --out",
                )


def _check_out(out: Path, force: bool) -> None:
    """Refuses a folder that is a file, or that holds anything, unless --force."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder", hint="pass another --out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(
            f"{out} is not empty; nothing was written",
            hint="pass another --out, or --force to write the bundle's files over the ones there",
        )
