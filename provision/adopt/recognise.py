"""What a notebook's exported SOURCE is, for `dbtwf adopt`: pure, no request sent.

Four answers (``Recognition.kind``):

- ``"guide"``: the guide's code as users pasted it (possibly edited): it reads the token with
  ``dbutils.secrets.get(scope=..., key=...)``, the dbt job from a ``job_id`` widget, and POSTs
  to ``/api/v2/accounts/<account>/jobs/<job>/run/``. The host, account, scope and key are read
  off the code with ``ast``: from literals, also through variables (any name) bound once to a
  literal, f-strings, ``+`` and ``int()``/``str()`` of a literal. A value still holding the
  guide's placeholder (``<YOUR_BASE_URL>``) is *missing* (asked for, or taken from a flag).
- ``"runner"``: dbtwf's own runner notebook (its constants, ``notebook_constants``).
- ``"backup"``: the copy of hand-pasted code dbtwf kept next to the runner (``BACKUP_MARK``
  first line, ``BACKUP_SUFFIX`` name): it still looks like the guide's code, and must never be
  taken for a new hand-made setup.
- ``"refused"``: the guide's code edited in a way dbtwf cannot take over safely (the host or
  account computed at run time, the secret read through a value not fixed in the code, the
  token sent anywhere but the dbt host, several secrets), with why.
- ``"other"``: not the guide's code at all (``"unreadable"``: the scan could not read it).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from provision.desired import notebook_constants

#: The backup file's name: the notebook's path plus this (a workspace FILE, never a notebook).
BACKUP_SUFFIX = ".dbtwf-backup.py"
#: The backup's first line starts with this; the hand-pasted SOURCE follows unchanged.
BACKUP_MARK = "# dbtwf-backup:"

Kind = Literal["guide", "runner", "backup", "refused", "other", "unreadable"]
#: The values adopt needs, by the names the flags and the config use.
VALUE_NAMES = ("dbt_cloud_host", "dbt_cloud_account_id", "secret_scope", "secret_key")
_PLACEHOLDER_NAME = re.compile(r"(?<![\"'\w])<YOUR_[A-Z_]+>(?![\"'\w])")
_PLACEHOLDER_TEXT = re.compile(r"^\s*<YOUR_[A-Z_]+>\s*$")
_ACCOUNTS = "/api/v2/accounts/"
#: Calls that may be handed the token without sending it anywhere.
_HARMLESS_CALLS = frozenset({"print", "len", "str", "repr", "format", "isinstance", "bool"})


@dataclass(frozen=True)
class Recognition:
    kind: Kind
    #: What was read off the code (guide only): a subset of VALUE_NAMES.
    values: dict[str, Any] = field(default_factory=dict)
    #: VALUE_NAMES the code does not say (placeholders left in): asked for or taken from flags.
    missing: tuple[str, ...] = ()
    #: Why: for "refused" what makes it unsafe, for "other" what is not there.
    reason: str = ""


def backup_header(path: str, sha256: str) -> str:
    """The first line of a backup dbtwf writes."""
    return (
        f"{BACKUP_MARK} the code of notebook {path} (sha256 {sha256}) before `dbtwf adopt` replaced it "
        "with dbtwf's runner; `dbtwf destroy` puts it back. Nothing runs this file."
    )


def is_backup(path: str, source: str) -> bool:
    return path.endswith(BACKUP_SUFFIX) or source.lstrip().startswith(BACKUP_MARK)


def is_runner(source: str) -> bool:
    found = notebook_constants(source)
    return "run_from_notebook(" in source and {"dbt_cloud_host", "secret_scope"} <= set(found)


def recognise(source: str, path: str = "") -> Recognition:
    """What the notebook at ``path`` is, from its exported SOURCE."""
    if is_backup(path, source):
        return Recognition("backup", reason="a backup dbtwf made of hand-pasted code")
    if is_runner(source):
        return Recognition("runner", reason="dbtwf's runner notebook")
    if "secrets.get" not in source or _ACCOUNTS not in source:
        return Recognition("other", reason="does not read a secret and call the dbt accounts API")
    # The guide's `account_id = <YOUR_ACCOUNT_ID>` is not Python until filled in: a missing value.
    text = _PLACEHOLDER_NAME.sub("None", source)
    try:
        tree = ast.parse(text)
    except SyntaxError as error:
        return Recognition("refused", reason=f"not valid Python (line {error.lineno}: {error.msg})")
    try:
        return _Reading(tree).recognise()
    except _Refusal as refusal:
        return Recognition("refused", reason=str(refusal))


class _Refusal(Exception):
    pass


class _Hole:
    """A part of a string only known at run time (the job id from the widget, say)."""

    def __init__(self, node: ast.AST) -> None:
        self.text = ast.unparse(node) if isinstance(node, ast.expr) else "?"


_UNKNOWN = object()


def _call_name(node: ast.Call) -> str:
    """`dbutils.secrets.get` for that call, `requests.post`, `print`; "" for anything else."""
    parts: list[str] = []
    func: ast.expr = node.func
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
        return ".".join(reversed(parts))
    return ""


def _argument(call: ast.Call, name: str, position: int) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    return call.args[position] if len(call.args) > position else None


class _Reading:
    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        #: name -> every expression bound to it (None: bound some other way: loop, parameter, ...)
        self.bindings: dict[str, list[ast.expr | None]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    self._bind(target, node.value)
            elif isinstance(node, ast.AnnAssign | ast.AugAssign):
                self._bind(node.target, node.value if isinstance(node, ast.AnnAssign) else None)
            elif isinstance(node, ast.For | ast.comprehension | ast.NamedExpr):
                self._bind(node.target, None)
            elif isinstance(node, ast.arguments):
                for arg in [*node.posonlyargs, *node.args, *node.kwonlyargs, node.vararg, node.kwarg]:
                    if arg is not None:
                        self.bindings.setdefault(arg.arg, []).append(None)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                for alias in node.names:
                    self.bindings.setdefault(alias.asname or alias.name.split(".")[0], []).append(None)
            elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                self._bind(node.optional_vars, None)

    def _bind(self, target: ast.expr, value: ast.expr | None) -> None:
        if isinstance(target, ast.Name):
            self.bindings.setdefault(target.id, []).append(value)
        elif isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:
                self._bind(element, None)

    # -- values ------------------------------------------------------------------------
    def literal(self, node: ast.expr | None, depth: int = 0) -> Any:
        """The value when fixed in the code, else _UNKNOWN."""
        if node is None or depth > 20:
            return _UNKNOWN
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            bound = self.bindings.get(node.id, [])
            return self.literal(bound[0], depth + 1) if len(bound) == 1 else _UNKNOWN
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            value = self.literal(node.operand, depth + 1)
            return -value if isinstance(value, int) else _UNKNOWN
        if isinstance(node, ast.Call) and _call_name(node) in ("int", "str") and len(node.args) == 1:
            value = self.literal(node.args[0], depth + 1)
            if value is _UNKNOWN:
                return _UNKNOWN
            try:
                return int(value) if _call_name(node) == "int" else str(value)
            except (TypeError, ValueError):
                return _UNKNOWN
        parts = self.template(node, depth)
        if parts is not None and all(isinstance(part, str) for part in parts):
            return "".join(str(part) for part in parts)
        return _UNKNOWN

    def template(self, node: ast.expr | None, depth: int = 0) -> list[str | _Hole] | None:
        """A string built from pieces, each known or a hole; None when not a string at all."""
        if node is None or depth > 20:
            return None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, ast.JoinedStr):
            parts: list[str | _Hole] = []
            for value in node.values:
                if isinstance(value, ast.Constant):
                    parts.append(str(value.value))
                elif isinstance(value, ast.FormattedValue):
                    inner = self.template(value.value, depth + 1) if value.format_spec is None else None
                    if inner is None:
                        known = (
                            self.literal(value.value, depth + 1) if value.format_spec is None else _UNKNOWN
                        )
                        inner = [_Hole(value.value) if known is _UNKNOWN else str(known)]
                    parts += inner
            return parts
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self.template(node.left, depth + 1), self.template(node.right, depth + 1)
            if left is None or right is None:
                return None
            return left + right
        if isinstance(node, ast.Name):
            bound = self.bindings.get(node.id, [])
            if len(bound) == 1 and bound[0] is not None:
                inner = self.template(bound[0], depth + 1)
                if inner is not None:
                    return inner
                known = self.literal(bound[0], depth + 1)
                if known is not _UNKNOWN:
                    return [str(known)]  # None: a placeholder left in (`account_id = <YOUR_…>`)
            return [_Hole(node)]
        known = self.literal(node, depth + 1)
        return [str(known)] if known is not _UNKNOWN else None

    def calls(self) -> Iterator[ast.Call]:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call):
                yield node

    # -- the guide's shape ---------------------------------------------------------------
    def recognise(self) -> Recognition:
        secret_calls = [call for call in self.calls() if _call_name(call).endswith("secrets.get")]
        if not secret_calls:
            return Recognition("other", reason="does not read a secret with dbutils.secrets.get")
        values: dict[str, Any] = {}
        missing: list[str] = []
        pairs = set()
        for call in secret_calls:
            pair = []
            for name, position, field_name in (("scope", 0, "secret_scope"), ("key", 1, "secret_key")):
                node = _argument(call, name, position)
                value = self.literal(node)
                if value is _UNKNOWN or (value is not None and not isinstance(value, str)):
                    where = ast.unparse(node) if node is not None else "nothing"
                    raise _Refusal(
                        f"the secret {name} is {where}, not a value written in the notebook "
                        "(read from a variable set at run time)"
                    )
                pair.append(value)
                if value is None or _PLACEHOLDER_TEXT.match(value):
                    missing.append(field_name)
                else:
                    values[field_name] = value
            pairs.add(tuple(pair))
        if len(pairs) > 1:
            raise _Refusal("it reads several secrets; dbtwf's runner reads exactly one token")
        self._check_job_widget()
        trigger = self._trigger_url()
        host, account = self._split_trigger(trigger)
        for name, value in (("dbt_cloud_host", host), ("dbt_cloud_account_id", account)):
            if value is None:
                missing.append(name)
            else:
                values[name] = value
        self._check_token_flow(secret_calls, trigger)
        ordered = tuple(name for name in VALUE_NAMES if name in missing)
        return Recognition("guide", values=values, missing=ordered, reason="the guide's code")

    def _check_job_widget(self) -> None:
        for call in self.calls():
            if (
                _call_name(call).endswith("widgets.get")
                and self.literal(_argument(call, "name", 0)) == "job_id"
            ):
                return
        raise _Refusal(
            "the dbt job is not read from the job_id widget, so the workflows' job_id means nothing"
        )

    def _trigger_url(self) -> list[str | _Hole]:
        """The URL of the POST that starts the dbt run (…/accounts/…/jobs/…/run/)."""
        found: list[list[str | _Hole]] = []
        for call in self.calls():
            url = self.template(_argument(call, "url", 0))
            if url is None:
                continue
            flat = "".join(part if isinstance(part, str) else "\0" for part in url)
            if _ACCOUNTS in flat and "/jobs/" in flat and "/run" in flat.split("/jobs/", 1)[1]:
                if not _call_name(call).endswith("post"):
                    raise _Refusal(f"the run is started with {_call_name(call) or 'a call'}, not a POST")
                found.append(url)
        if not found:
            raise _Refusal("no POST to /api/v2/accounts/<account>/jobs/<job>/run/ with a URL dbtwf can read")
        return found[0]

    def _split_trigger(self, url: list[str | _Hole]) -> tuple[str | None, int | None]:
        """(host, account id) of the trigger URL; None for a placeholder left in."""
        prefix: list[str | _Hole] = []
        rest: list[str | _Hole] = []
        for index, part in enumerate(url):
            if isinstance(part, str) and _ACCOUNTS in part:
                before, after = part.split(_ACCOUNTS, 1)
                prefix, rest = [*url[:index], before], [after, *url[index + 1 :]]
                break
        else:
            raise _Refusal("the URL is put together in a way dbtwf cannot read")
        holes = [part for part in prefix if isinstance(part, _Hole)]
        if holes:
            raise _Refusal(
                f"the dbt host is computed at run time ({holes[0].text}), not written in the notebook"
            )
        host = _host("".join(str(part) for part in prefix))
        account_text = ""
        for part in rest:
            if isinstance(part, _Hole):
                if account_text:
                    break
                raise _Refusal(
                    f"the dbt account is computed at run time ({part.text}), not written in the notebook"
                )
            account_text += part
            if "/" in account_text:
                break
        account_text = account_text.split("/", 1)[0].strip()
        if account_text in ("None", "") or _PLACEHOLDER_TEXT.match(account_text):
            return host, None
        if not account_text.isdigit() or int(account_text) <= 0:
            raise _Refusal(f"the dbt account {account_text!r} is not a positive number")
        return host, int(account_text)

    def _check_token_flow(self, secret_calls: list[ast.Call], trigger: list[str | _Hole]) -> None:
        """Every call handed the token (or a value made from it) must go to the dbt host."""
        tainted: set[str] = set()
        secret_ids = {id(call) for call in secret_calls}

        def carries(node: ast.AST) -> bool:
            return any(
                (isinstance(inner, ast.Name) and inner.id in tainted) or id(inner) in secret_ids
                for inner in ast.walk(node)
            )

        changed = True
        while changed:
            changed = False
            for name, bound in self.bindings.items():
                if name not in tainted and any(value is not None and carries(value) for value in bound):
                    tainted.add(name)
                    changed = True
        dbt_prefix = _flat(trigger).split(_ACCOUNTS, 1)[0]
        for call in self.calls():
            if id(call) in secret_ids or _call_name(call) in _HARMLESS_CALLS:
                continue
            arguments: list[ast.AST] = [*call.args, *(keyword.value for keyword in call.keywords)]
            if not any(carries(argument) for argument in arguments):
                continue
            url = self.template(_argument(call, "url", 0))
            where = _flat(url) if url is not None else ""
            if url is None or not where.startswith(dbt_prefix + "/api/"):
                shown = where.replace("\0", "{…}") if where else "a value that is not a URL"
                raise _Refusal(
                    f"the token is handed to {_call_name(call) or 'a call'}({shown}), "
                    "not sent to the dbt host's API"
                )


def _flat(parts: list[str | _Hole]) -> str:
    return "".join(part if isinstance(part, str) else "\0" for part in parts)


def _host(prefix: str) -> str | None:
    """The environment's dbt_cloud_host from the URL's part before /api/: a bare host for
    https (how the config writes it), the URL for another scheme; None for a placeholder."""
    text = prefix.strip().rstrip("/")
    if not text or text in ("https://None", "None", "http://None") or "<YOUR_" in text:
        return None
    if text.lower().startswith("https://"):
        text = text[len("https://") :]
    return text
