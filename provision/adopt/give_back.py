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


def give_back_workflow(adopted: AdoptedWorkflow, current: dict[str, Any]) -> dict[str, Any]:
    """One jobs/update's worth: the tags and the fields dbtwf manages as adopt found them
    (tasks and job clusters by key: those dbtwf added go); a record without them: the tags."""
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
        for array, key in (("tasks", "task_key"), ("job_clusters", "job_cluster_key")):
            kept = {item.get(key) for item in adopted.settings.get(array) or []}
            if array in adopted.settings:
                removed += [
                    f"{array}/{i.get(key)}" for i in current.get(array) or [] if i.get(key) not in kept
                ]
    return {"op": "give-back", "new_settings": new_settings, "fields_to_remove": removed}


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
