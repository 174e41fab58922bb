"""What `dbtwf destroy` does with what `dbtwf adopt` took over: give it back.

The workflow adopt tagged goes back as adopt found it (``give_back_workflow``: its tags and the
fields dbtwf manages, in one jobs/update), and the notebook gets the hand-pasted code back from
the backup file (``give_back_notebook``). Both are plan entries (``Change``) for the one executor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provision.adopt.recognise import BACKUP_MARK
from provision.change import Action, Change
from provision.desired import MANAGED_JOB_FIELDS, sha256_text

if TYPE_CHECKING:
    from provision.model import Environment
    from provision.observe import Reader
    from provision.state import AdoptedWorkflow, StateRecord


def give_back_workflow(
    adopted: AdoptedWorkflow, current: dict[str, Any], env: Environment | None = None
) -> dict[str, Any]:
    """One jobs/update's worth: the tags and the fields dbtwf manages as adopt found them
    (tasks and job clusters by key: those dbtwf added go); a record without them: the tags.
    A task added since that is not dbtwf's (it runs neither the environment's notebook nor its
    dbt platform task) is the user's: it stays, named in ``kept``, with the job clusters it uses."""
    new_settings: dict[str, Any] = {"tags": adopted.tags} if adopted.tags else {}
    removed = [] if adopted.tags else ["tags"]
    if adopted.settings is not None:
        for name in MANAGED_JOB_FIELDS:
            if name == "tags":
                continue
            if name in adopted.settings:
                new_settings[name] = adopted.settings[name]
            elif name in current:
                removed.append(name)
        found = {str(t.get("task_key")) for t in adopted.settings.get("tasks") or []}
        users = [
            t
            for t in current.get("tasks") or []
            if str(t.get("task_key")) not in found and env is not None and not _is_dbtwf_task(env, t)
        ]
        user_keys = {str(t.get("task_key")) for t in users}
        user_clusters = {t.get("job_cluster_key") for t in users} - {None}
        if users and "tasks" in new_settings:
            new_settings["tasks"] = [*new_settings["tasks"], *users]
        for array, key in (("tasks", "task_key"), ("job_clusters", "job_cluster_key")):
            kept = {item.get(key) for item in adopted.settings.get(array) or []} | user_keys | user_clusters
            if array in adopted.settings:
                removed += [
                    f"{array}/{i.get(key)}" for i in current.get(array) or [] if i.get(key) not in kept
                ]
        if user_clusters and "job_clusters" in new_settings:
            extra = [
                c for c in current.get("job_clusters") or [] if c.get("job_cluster_key") in user_clusters
            ]
            known = {c.get("job_cluster_key") for c in new_settings["job_clusters"]}
            new_settings["job_clusters"] += [c for c in extra if c.get("job_cluster_key") not in known]
        if users:
            return {
                "op": "give-back",
                "new_settings": new_settings,
                "fields_to_remove": removed,
                "kept": sorted(user_keys),
            }
    return {"op": "give-back", "new_settings": new_settings, "fields_to_remove": removed}


def _is_dbtwf_task(env: Environment, task: dict[str, Any]) -> bool:
    """A task apply or migrate writes into the environment's workflow: it runs the runner
    notebook, or the environment's dbt platform task."""
    from provision.platform import is_platform_task_of

    notebook = (task.get("notebook_task") or {}).get("notebook_path")
    return notebook == env.notebook_path or is_platform_task_of(env, task)


def give_back_notebook(reader: Reader, env: Environment, state: StateRecord) -> list[Change]:
    """An adopted notebook: the hand-pasted code put back from the backup (which then goes);
    without the backup the runner stays, so the tasks running it keep working."""
    from provision.adopt.recognise import BACKUP_SUFFIX

    backup = state.backup_path
    if backup and backup != env.notebook_path + BACKUP_SUFFIX:
        # Adopt only ever writes the backup next to the notebook: a record naming another file
        # was edited, and destroy would overwrite the notebook from it and delete it.
        why = f"the state record names {backup} as the backup, not the file adopt writes: left alone"
        return [Change("notebook", env.notebook_path, Action.NOOP, why)]
    data = reader.file(backup) if backup else None
    if data is None:
        why = f"adopted, and its backup {backup or '(none recorded)'} is gone: the runner stays"
        return [Change("notebook", env.notebook_path, Action.NOOP, why)]
    text = data.decode("utf-8", errors="replace")
    first, _, source = text.partition("\n")
    if not first.startswith(BACKUP_MARK):
        source = text
    why = f"the hand-pasted code put back from {backup}, which is then deleted"
    if sha256_text(source) != state.original_notebook_sha256:
        why += " (the backup was edited since adopt: put back as it is now)"
    payload = {"op": "restore", "source": source}
    return [Change("backup", backup, Action.UPDATE, why, None, payload)]
