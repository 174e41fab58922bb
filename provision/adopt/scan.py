"""Finding hand-made setups: notebooks holding the guide's code, and the workflows running them.

Read-only: workspace/list (one folder at a time, so the walk can count and stop at a limit),
workspace/export of each Python notebook (and workspace .py file) found, jobs/list with tasks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from provision.adopt.recognise import Recognition, recognise
from provision.errors import DbtwfError, UsageError
from provision.parallel import run_all

if TYPE_CHECKING:
    from provision.databricks import Workspace
    from provision.observe import Reader

DEFAULT_LIMIT = 5000
#: Every how many listed objects the progress line is refreshed.
PROGRESS_EVERY = 100


@dataclass(frozen=True)
class Found:
    """One notebook (or workspace .py file) looked at, and what it is."""

    path: str
    recognition: Recognition
    source: str = field(repr=False, default="")


@dataclass(frozen=True)
class ScanResult:
    found: tuple[Found, ...]
    #: Objects listed (folders included).
    listed: int
    #: The limit stopped the walk before every folder was listed.
    truncated: bool = False

    def of_kind(self, *kinds: str) -> list[Found]:
        return [item for item in self.found if item.recognition.kind in kinds]


def _is_candidate(info: Mapping[str, Any]) -> bool:
    kind = info.get("object_type")
    if kind == "NOTEBOOK":
        return info.get("language") == "PYTHON"
    return kind == "FILE" and str(info.get("path") or "").endswith(".py")


def scan(
    ws: Workspace,
    *,
    notebooks: Sequence[str] = (),
    folders: Sequence[str] = (),
    limit: int = DEFAULT_LIMIT,
    progress: Callable[[int, bool], None] | None = None,
) -> ScanResult:
    """Looks at the named notebooks, else every object under the named folders, else under
    ``/``, at most ``limit`` listed objects; ``progress(listed, done)`` hears how far it got."""
    candidates: list[Mapping[str, Any]] = []
    listed = 0
    truncated = False
    for path in notebooks:
        info = ws.get_status(path)
        if info is None:
            raise UsageError(f"--notebook {path}: nothing there", "pass the notebook's workspace path")
        if not _is_candidate(info):
            raise UsageError(f"--notebook {path}: not a Python notebook ({info.get('object_type')})")
        candidates.append(info)
    queue = list(folders) if folders or notebooks else ["/"]
    for folder in folders:
        info = ws.get_status(folder)
        if info is None or info.get("object_type") != "DIRECTORY":
            raise UsageError(f"--folder {folder}: no folder there", "pass a workspace folder, e.g. /Users/me")
    unreadable: list[Found] = []
    # One level of the tree at a time, its folders listed together (8 requests in flight):
    # a workspace of thousands of folders is not walked one round trip after another.
    while queue and not truncated:
        level, queue = queue, []
        outcomes = run_all([functools.partial(ws.list_folder, folder) for folder in level])
        for folder, outcome in zip(level, outcomes, strict=True):
            if truncated:
                break
            if outcome.error is not None:
                if folder in folders or not isinstance(outcome.error, DbtwfError):
                    raise outcome.error
                # Another user's home the identity may not list: said, not fatal to the scan.
                why = f"cannot be listed: {outcome.error.message}"
                unreadable.append(Found(folder, Recognition("unreadable", reason=why)))
                continue
            for info in outcome.value or []:
                listed += 1
                if info.get("object_type") == "DIRECTORY":
                    queue.append(str(info["path"]))
                elif _is_candidate(info):
                    candidates.append(info)
                if progress is not None and listed % PROGRESS_EVERY == 0:
                    progress(listed, False)
                if listed >= limit:
                    truncated = True
                    break
    if progress is not None and not notebooks:
        progress(listed, True)

    def read(info: Mapping[str, Any]) -> Found:
        path = str(info["path"])
        try:
            if info.get("object_type") == "NOTEBOOK":
                text = ws.export_source(path) or ""
            else:
                text = (ws.read_file(path) or b"").decode("utf-8", errors="replace")
        except DbtwfError as error:
            if path in notebooks:
                raise
            return Found(path, Recognition("unreadable", reason=f"cannot be read: {error.message}"))
        return Found(path, recognise(text, path), text)

    outcomes = run_all([functools.partial(read, info) for info in candidates])
    found = [outcome.get() for outcome in outcomes]
    items = tuple(item for item in [*found, *unreadable] if item is not None)
    return ScanResult(items, listed, truncated)


# -- the workflows that run a notebook -------------------------------------------------------


@dataclass(frozen=True)
class TaskUse:
    job_id: int
    job_name: str
    task: dict[str, Any]
    #: The dbt job the task runs: its own base_parameters.job_id, else the job parameter's default.
    dbt_job_id: int


@dataclass(frozen=True)
class WorkflowUse:
    job: dict[str, Any]
    #: The tasks running the notebook.
    tasks: tuple[TaskUse, ...]
    #: Every task of the workflow runs the notebook: it was made for it.
    purpose_built: bool
    #: Why its tasks cannot be taken over (a job_id that is not a dbt job id); None: they can.
    unusable: DbtwfError | None = None

    @property
    def job_id(self) -> int:
        return int(self.job["job_id"])

    @property
    def name(self) -> str:
        return str((self.job.get("settings") or {}).get("name") or f"job {self.job_id}")


def _plain_path(path: str) -> str:
    return path.removeprefix("/Workspace") if path.startswith("/Workspace/") else path


def _dbt_job_id(job: Mapping[str, Any], task: Mapping[str, Any]) -> int:
    settings = job.get("settings") or {}
    value = ((task.get("notebook_task") or {}).get("base_parameters") or {}).get("job_id")
    for parameter in settings.get("parameters") or []:
        if parameter.get("name") == "job_id":
            value = parameter.get("default")  # a job parameter overrides the task's
    text = str(value or "").strip()
    if not text.isdigit() or int(text) <= 0:
        raise UsageError(
            f"task {task.get('task_key')!r} of workflow {job.get('job_id')} passes job_id {value!r}, "
            "not a dbt job id",
            "set the task's (or the workflow's) job_id parameter to the dbt job's number, then re-run",
        )
    return int(text)


def workflows_running(reader: Reader, path: str) -> list[WorkflowUse]:
    """The workflows with a notebook task running ``path`` (jobs/list with tasks)."""
    uses = []
    for job in reader.jobs_with_tasks():
        tasks = list((job.get("settings") or {}).get("tasks") or [])
        running = [
            t
            for t in tasks
            if _plain_path(str((t.get("notebook_task") or {}).get("notebook_path") or "")) == path
        ]
        if not running:
            continue
        name = str((job.get("settings") or {}).get("name") or "")
        built = len(running) == len(tasks)
        try:
            used = tuple(TaskUse(int(job["job_id"]), name, t, _dbt_job_id(job, t)) for t in running)
        except UsageError as error:  # anyone may make a workflow running the path: not fatal here
            uses.append(WorkflowUse(job, (), purpose_built=built, unusable=error))
            continue
        uses.append(WorkflowUse(job, used, purpose_built=built))
    return sorted(uses, key=lambda use: use.job_id)
