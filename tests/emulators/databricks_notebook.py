"""Runs one Databricks SOURCE-format Python notebook the way a job task does, with a small `dbutils`.

The Databricks emulator starts this file as a script, in a fresh process of the Python it was
given: ``python databricks_notebook.py CONTEXT_JSON_PATH``. It must stay standard-library only
and import nothing heavy, so a task starts in tens of milliseconds.

The process talks to the emulator over an inherited socket (fd in ``DBTWF_EMULATOR_CHANNEL_FD``),
one JSON object per line: ``secrets.*`` and ``taskValues.*`` calls are answered by the emulator
(which checks the scope ACL of the job's principal at call time, as the real service does) and
the last message is the task's outcome. stdout/stderr are the task's captured output.

Only what the product's runner needs is offered: ``dbutils.widgets``, ``dbutils.secrets``,
``dbutils.jobs.taskValues`` and ``dbutils.notebook`` (``exit`` and a thin ``entry_point`` context).
Anything else raises AttributeError, like a missing API would.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import traceback
from typing import Any

NOTEBOOK_HEADER = "# Databricks notebook source"
CELL_SEPARATOR = "# COMMAND ----------"
TASK_VALUE_MAX_BYTES = 48 * 1024


class InputWidgetNotDefined(Exception):
    pass


class IllegalArgumentException(Exception):
    pass


class NotebookExit(BaseException):
    """Raised by ``dbutils.notebook.exit``; a BaseException so ``except Exception`` cannot swallow it."""

    def __init__(self, value: str) -> None:
        super().__init__(value)
        self.value = value


class _Channel:
    def __init__(self, fd: int) -> None:
        self._socket = socket.socket(fileno=fd)
        self._reader = self._socket.makefile("r", encoding="utf-8")
        self._writer = self._socket.makefile("w", encoding="utf-8")

    def send(self, message: dict[str, Any]) -> None:
        self._writer.write(json.dumps(message) + "\n")
        self._writer.flush()

    def call(self, op: str, **args: Any) -> Any:
        self.send({"op": op, **args})
        line = self._reader.readline()
        if not line:
            raise RuntimeError("The Databricks emulator closed the dbutils channel")
        reply = json.loads(line)
        if reply.get("ok"):
            return reply.get("value")
        error_class = {
            "IllegalArgumentException": IllegalArgumentException,
            "ValueError": ValueError,
            "TypeError": TypeError,
        }.get(reply.get("error", ""), Exception)
        raise error_class(reply.get("message", "dbutils call failed"))


class Widgets:
    """Declared widgets with their defaults; the task's parameters override them, as on Databricks.

    A parameter is readable with :meth:`get` whether or not the notebook declares a widget of that
    name: the Jobs API passes the task's parameters (base_parameters, pushed-down job parameters,
    run-now notebook_params) to the notebook as a map "accessible through the dbutils.widgets.get
    function" (databricks-sdk `jobs.NotebookTask.base_parameters` and `jobs.RunNow.notebook_params`
    docstrings; docs.databricks.com/jobs/job-parameters.html#job-parameter-pushdown). Only a name
    that is neither declared nor passed raises InputWidgetNotDefined.
    """

    def __init__(self, parameters: dict[str, str]) -> None:
        self._parameters = dict(parameters)
        self.defaults: dict[str, str] = {}

    def _define(self, name: str, default_value: str) -> None:
        self.defaults[name] = "" if default_value is None else str(default_value)

    def text(self, name: str, defaultValue: str = "", label: str | None = None) -> None:
        self._define(name, defaultValue)

    def dropdown(
        self,
        name: str,
        defaultValue: str,
        choices: list[str],
        label: str | None = None,
    ) -> None:
        if defaultValue not in choices:
            raise IllegalArgumentException(f"Default value {defaultValue} is not a valid choice")
        self._define(name, defaultValue)

    def combobox(
        self,
        name: str,
        defaultValue: str,
        choices: list[str],
        label: str | None = None,
    ) -> None:
        self._define(name, defaultValue)

    multiselect = combobox  # the same arguments, and here the same leniency about the default

    def get(self, name: str) -> str:
        if name in self._parameters:
            return self._parameters[name]
        if name in self.defaults:
            return self.defaults[name]
        raise InputWidgetNotDefined(f"No input widget named {name} is defined")

    def getArgument(self, name: str, optional: str | None = None) -> str | None:
        try:
            return self.get(name)
        except InputWidgetNotDefined:
            return optional

    def getAll(self) -> dict[str, str]:
        return {**self.defaults, **self._parameters}

    def remove(self, name: str) -> None:
        self.defaults.pop(name, None)

    def removeAll(self) -> None:
        self.defaults.clear()


class _Secrets:
    def __init__(self, channel: _Channel) -> None:
        self._channel = channel

    def get(self, scope: str, key: str) -> str:
        return str(self._channel.call("secrets.get", scope=scope, key=key))

    def getBytes(self, scope: str, key: str) -> bytes:
        return self.get(scope, key).encode()

    def listScopes(self) -> list[str]:
        return list(self._channel.call("secrets.listScopes"))

    def list(self, scope: str) -> Any:  # defined last: inside the class body `list` is then this method
        return list(self._channel.call("secrets.list", scope=scope))


class _TaskValues:
    def __init__(self, channel: _Channel) -> None:
        self._channel = channel

    def set(self, key: str, value: Any) -> None:
        encoded = json.dumps(value)  # TypeError for values that are not JSON, as on Databricks
        if len(encoded.encode()) > TASK_VALUE_MAX_BYTES:
            raise ValueError(f"Task value for key {key} exceeds the 48 KiB limit")
        self._channel.call("taskValues.set", key=key, value=encoded)

    def get(self, taskKey: str, key: str, default: Any = None, debugValue: Any = None) -> Any:
        found = self._channel.call("taskValues.get", task_key=taskKey, key=key)
        if found is not None:
            return json.loads(found)
        if default is not None:
            return default
        raise ValueError(f"No task value found for key {key} in task {taskKey}")


class _Jobs:
    def __init__(self, channel: _Channel) -> None:
        self.taskValues = _TaskValues(channel)


class _Option:
    """The Scala ``Option`` the notebook context hands out."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def isDefined(self) -> bool:
        return self._value is not None

    def get(self) -> Any:
        if self._value is None:
            raise ValueError("None.get")
        return self._value


class _Context:
    def __init__(self, context: dict[str, Any]) -> None:
        self._context = context

    def toJson(self) -> str:
        return json.dumps(self._context)

    def jobId(self) -> _Option:
        return _Option(self._context["tags"].get("jobId"))

    def currentRunId(self) -> _Option:
        return _Option(self._context["tags"].get("runId"))

    def notebookPath(self) -> _Option:
        return _Option(self._context["extraContext"].get("notebook_path"))


class EntryPoint:
    def __init__(self, context: dict[str, Any]) -> None:
        self._context = _Context(context)

    def getDbutils(self) -> EntryPoint:
        return self

    def notebook(self) -> EntryPoint:
        return self

    def getContext(self) -> _Context:
        return self._context


class _Notebook:
    def __init__(self, context: dict[str, Any]) -> None:
        self.entry_point = EntryPoint(context)

    def exit(self, value: Any) -> None:
        raise NotebookExit(str(value))


class DBUtils:
    def __init__(self, parameters: dict[str, str], channel: _Channel, context: dict[str, Any]) -> None:
        self.widgets = Widgets(parameters)
        self.secrets = _Secrets(channel)
        self.jobs = _Jobs(channel)
        self.notebook = _Notebook(context)


def code_cells(source: str) -> list[str]:
    """The notebook's Python cells; `# MAGIC` cells (markdown, %pip, %sql...) do not run here."""
    lines = source.splitlines()
    if lines and lines[0].strip() == NOTEBOOK_HEADER:
        lines = lines[1:]
    cells: list[list[str]] = [[]]
    for line in lines:
        if line.strip() == CELL_SEPARATOR:
            cells.append([])
        else:
            cells[-1].append(line)
    code = []
    for cell in cells:
        meaningful = [line for line in cell if line.strip()]
        if not meaningful or all(line.lstrip().startswith("# MAGIC") for line in meaningful):
            continue
        code.append("\n".join(cell) + "\n")
    return code


def _error_line(exc: BaseException) -> str:
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as handle:
        context = json.load(handle)
    channel = _Channel(int(os.environ["DBTWF_EMULATOR_CHANNEL_FD"]))
    dbutils = DBUtils(context["parameters"], channel, context["notebook_context"])
    namespace: dict[str, Any] = {"__name__": "__main__", "dbutils": dbutils}
    outcome: dict[str, Any] = {"op": "outcome", "status": "success"}
    try:
        for number, cell in enumerate(code_cells(context["source"]), start=1):
            exec(compile(cell, f"<command-{number}>", "exec"), namespace)  # noqa: S102 - it is the notebook
    except NotebookExit as exit_:
        outcome = {"op": "outcome", "status": "exit", "exit_value": exit_.value}
    except BaseException as exc:  # noqa: BLE001 - every failure of user code is the task's failure
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        sys.stderr.write(trace)
        outcome = {"op": "outcome", "status": "error", "error": _error_line(exc), "error_trace": trace}
    sys.stdout.flush()
    sys.stderr.flush()
    channel.send(outcome)
    return 0 if outcome["status"] != "error" else 1


if __name__ == "__main__":
    sys.exit(main())
