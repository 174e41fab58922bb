"""A workspace as the guide leaves it, built over the public API (as a user would by hand).

The guide (``/work/shared/seed/000_…``, "Using Databricks workflows to run dbt Cloud jobs")
has users create a secret scope and put the dbt token in it, paste its Python code into a
notebook with the placeholders filled in, then either schedule the notebook (a workflow made
for it, with a ``job_id`` parameter) or add it as a task to an existing workflow. The code
below is the guide's, as its page renders it (the comment block inside the request body
included); only the placeholders are filled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from provision.databricks import Workspace

SEED = Path("/work/shared/seed/000_9ac654fd18a07e79.txt")
GUIDE_SCOPE = "dbt-cloud"
GUIDE_KEY = "api-key"

#: The guide's notebook code (lines 58-129 of the seed, the nested ``` fences dropped). Kept
#: here so the tests do not depend on the seed file being present.
GUIDE_CODE = """import enum
import os
import time
import json
import requests
from getpass import getpass
\x20\x20\x20\x20\x20
dbutils.widgets.text("job_id", "Enter the Job ID")
job_id = dbutils.widgets.get("job_id")

account_id = <YOUR_ACCOUNT_ID>
base_url =  "<YOUR_BASE_URL>"
api_key =  dbutils.secrets.get(scope = "<YOUR_SECRET_SCOPE>", key = "<YOUR_SECRET_KEY>")

# Это задокументировано в документации API dbt
class DbtJobRunStatus(enum.IntEnum):
    QUEUED = 1
    STARTING = 2
    RUNNING = 3
    SUCCESS = 10
    ERROR = 20
    CANCELLED = 30

def _trigger_job() -> int:
    res = requests.post(
        url=f"https://{base_url}/api/v2/accounts/{account_id}/jobs/{job_id}/run/",
        headers={'Authorization': f"Token {api_key}"},
        json={
# При необходимости можно передать описание, которое будет отображаться в API <Constant name="cloud" />.
# См. документацию по API для информации о дополнительных параметрах, которые можно передать,
# включая `schema_override`
            'cause': f"Triggered by Databricks Workflows.",
        }
    )

    try:
        res.raise_for_status()
    except:
        print(f"API token (last four): ...{api_key[-4:]}")
        raise

    response_payload = res.json()
    return response_payload['data']['id']

def _get_job_run_status(job_run_id):
    res = requests.get(
        url=f"https://{base_url}/api/v2/accounts/{account_id}/runs/{job_run_id}/",
        headers={'Authorization': f"Token {api_key}"},
    )

    res.raise_for_status()
    response_payload = res.json()
    return response_payload['data']['status']

def run():
    job_run_id = _trigger_job()
    print(f"job_run_id = {job_run_id}")\x20\x20\x20
    while True:
        time.sleep(5)
        status = _get_job_run_status(job_run_id)
        print(DbtJobRunStatus(status))
        if status == DbtJobRunStatus.SUCCESS:
            break
        elif status == DbtJobRunStatus.ERROR or status == DbtJobRunStatus.CANCELLED:
            raise Exception("Failure!")

if __name__ == '__main__':
    run()
"""


def seed_code() -> str | None:
    """The guide's code as the seed file has it (fences dropped), to check GUIDE_CODE against."""
    if not SEED.exists():
        return None
    lines = SEED.read_text(encoding="utf-8").splitlines()
    start = lines.index("import enum")
    end = lines.index("    run()", start)
    return "\n".join(line for line in lines[start : end + 1] if not line.startswith("```")) + "\n"


def guide_source(host: str, account_id: int, scope: str = GUIDE_SCOPE, key: str = GUIDE_KEY) -> str:
    """The guide's notebook as a user pasted it, placeholders filled. A host with a scheme
    (the emulator's http://127.0.0.1:port) is written as users do for a non-https host: the
    scheme in base_url and not in the f-string."""
    code = GUIDE_CODE.replace("<YOUR_ACCOUNT_ID>", str(account_id))
    code = code.replace("<YOUR_SECRET_SCOPE>", scope).replace("<YOUR_SECRET_KEY>", key)
    if "://" in host:
        code = code.replace("https://{base_url}", "{base_url}")
    return "# Databricks notebook source\n" + code.replace("<YOUR_BASE_URL>", host)


def tolerated_edit(host: str, account_id: int, scope: str = GUIDE_SCOPE, key: str = GUIDE_KEY) -> str:
    """The guide's code edited by hand in ways adopt must read through: other variable names,
    single quotes, positional secret arguments, the host with its scheme, extra cells and a
    %pip magic, comments, a session."""
    scheme_host = host if "://" in host else f"https://{host}"
    return f"""# Databricks notebook source
# MAGIC %pip install requests

# COMMAND ----------

import requests, time
# our team's copy of the dbt guide
DBT = '{scheme_host}'
ACCOUNT = int('{account_id}')
SCOPE, KEY = None, None  # unrelated, shadowed below
secret_scope_name = '{scope}'
token = dbutils.secrets.get(secret_scope_name, '{key}')

# COMMAND ----------

dbutils.widgets.text('job_id', '')
dbt_job = dbutils.widgets.get('job_id')
session = requests.Session()
auth = {{'Authorization': 'Token ' + token}}
run = session.post(DBT + '/api/v2/accounts/' + str(ACCOUNT) + '/jobs/' + dbt_job + '/run/',
                   headers=auth, json={{'cause': 'Databricks'}}).json()['data']
while session.get(url=f'{{DBT}}/api/v2/accounts/{{ACCOUNT}}/runs/{{run["id"]}}/',
                  headers=auth).json()['data']['status'] not in (10, 20, 30):
    time.sleep(10)
"""


def refused_edit(host: str, account_id: int, scope: str = GUIDE_SCOPE, key: str = GUIDE_KEY) -> str:
    """The guide's code edited so it cannot be adopted safely: the host comes from a widget
    at run time (so a run's parameters could send the token anywhere)."""
    return guide_source(host, account_id, scope, key).replace(
        f'base_url =  "{host}"', 'base_url = dbutils.widgets.get("dbt_host")'
    )


@dataclass
class GuideSetup:
    notebook_path: str
    scope: str
    key: str
    #: The workflow made for the notebook ("Schedule" in the notebook), and a foreign one
    #: that got a task running it next to an unrelated task.
    own_job_id: int
    foreign_job_id: int
    dbt_job_id: int
    source: str
    extra: dict[str, Any] = field(default_factory=dict)


def import_source(ws: Workspace, path: str, source: str) -> None:
    """A notebook pasted by hand: a Python notebook at ``path``."""
    ws.import_notebook(path, source, overwrite=True)


def seed_guide_workspace(
    ws: Workspace,
    *,
    dbt_host: str,
    account_id: int,
    dbt_job_id: int,
    token: str,
    folder: str | None = None,
    source: str | None = None,
    foreign_name: str = "Hourly loads",
) -> GuideSetup:
    """Scope + secret, the notebook, one workflow made for it (job_id as a job parameter, on an
    existing cluster as the guide's "Add a schedule" asks) and a foreign workflow with a task
    running it (job_id as a task parameter) after an unrelated task."""
    folder = folder or f"/Users/{ws.current_user_name()}/dbt"
    path = f"{folder}/trigger_dbt_job"
    ws.create_scope(GUIDE_SCOPE)
    ws.put_secret(GUIDE_SCOPE, GUIDE_KEY, token)
    ws.mkdirs(folder)
    text = source if source is not None else guide_source(dbt_host, account_id)
    import_source(ws, path, text)
    own = ws.create_job(
        {
            "name": "trigger_dbt_job",
            "tags": {"team": "analytics"},
            "parameters": [{"name": "job_id", "default": str(dbt_job_id)}],
            "tasks": [
                {
                    "task_key": "trigger_dbt_job",
                    "notebook_task": {"notebook_path": path, "source": "WORKSPACE"},
                    "existing_cluster_id": "0101-guide-cluster",
                }
            ],
        }
    )
    foreign = ws.create_job(
        {
            "name": foreign_name,
            "tasks": [
                {
                    "task_key": "ingest",
                    "notebook_task": {"notebook_path": f"{folder}/ingest", "source": "WORKSPACE"},
                    "existing_cluster_id": "0101-guide-cluster",
                },
                {
                    "task_key": "dbt_cloud",
                    "depends_on": [{"task_key": "ingest"}],
                    "notebook_task": {
                        "notebook_path": path,
                        "source": "WORKSPACE",
                        "base_parameters": {"job_id": str(dbt_job_id)},
                    },
                    "existing_cluster_id": "0101-guide-cluster",
                },
            ],
        }
    )
    return GuideSetup(path, GUIDE_SCOPE, GUIDE_KEY, own, foreign, dbt_job_id, text)


def exported(emulator: Any, path: str) -> str:
    """The notebook's content as the emulator holds it."""
    data = emulator.workspace_file(path)
    assert data is not None, path
    return bytes(data).decode("utf-8")
