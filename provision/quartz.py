"""A workflow schedule's rules: the Quartz cron grammar Databricks schedules take, and the time zone."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from provision.errors import UsageError
from provision.names import quoted


def validate_timezone(name: str) -> None:
    """A time zone the scheduler knows (IANA names, as Java's ZoneId accepts them)."""
    import zoneinfo

    if not isinstance(name, str) or not name:
        raise UsageError(f"{quoted(name)} is not a time zone; use an IANA name like Europe/Amsterdam or UTC")
    if name == "UTC":
        return
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        if not zoneinfo.available_timezones():
            return  # no tz database on this machine: leave the check to Databricks
        raise UsageError(
            f"{quoted(name)} is not a known time zone; use an IANA name like Europe/Amsterdam or UTC"
        ) from None


# Quartz: seconds minutes hours day-of-month month day-of-week [year].
_MONTHS = {
    name: i
    for i, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
    )
}
_DAYS = {name: i for i, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 1)}


@dataclass(frozen=True)
class _CronField:
    name: str
    low: int
    high: int
    names: Mapping[str, int]


_CRON_FIELDS = (
    _CronField("seconds", 0, 59, {}),
    _CronField("minutes", 0, 59, {}),
    _CronField("hours", 0, 23, {}),
    _CronField("day-of-month", 1, 31, {}),
    _CronField("month", 1, 12, _MONTHS),
    _CronField("day-of-week", 1, 7, _DAYS),
    _CronField("year", 1970, 2099, {}),
)
_CRON_EXAMPLE = '"0 0 6 * * ?" (every day at 06:00) or "0 30 7 ? * MON-FRI"'


class _CronFieldError(ValueError):
    pass


def _cron_value(text: str, field: _CronField) -> int:
    upper = text.upper()
    if upper in field.names:
        return field.names[upper]
    if not text.isdigit():
        known = f" or {next(iter(field.names))}-style names" if field.names else ""
        raise _CronFieldError(f"{text!r} is not a number{known}")
    value = int(text)
    if not field.low <= value <= field.high:
        raise _CronFieldError(f"{value} is outside {field.low}-{field.high}")
    return value


def _cron_item(item: str, field: _CronField) -> None:
    """One comma-separated item: *, a value, a range a-b (Quartz lets it wrap), each with /step."""
    base, slash, step = item.partition("/")
    if slash:
        if not step.isdigit() or not 1 <= int(step) <= field.high - field.low + 1:
            raise _CronFieldError(f"step {step!r} must be a number from 1 to {field.high - field.low + 1}")
        if base == "":
            return  # Quartz reads "/5" as "0/5"
    if base == "*":
        return
    if base == "?":
        raise _CronFieldError("'?' must stand alone")
    start, dash, stop = base.partition("-")
    _cron_value(start, field)
    if dash:
        _cron_value(stop, field)


def _cron_special(text: str, field: _CronField) -> bool:
    """Day fields' L, W and # forms (each must be the field's only item). True when matched."""
    upper = text.upper()
    if field.name == "day-of-month":
        if upper in ("L", "LW"):
            return True
        if match := re.fullmatch(r"L-(\d+)", upper):
            if not 0 <= int(match[1]) <= 30:
                raise _CronFieldError("the offset in L-n must be 0-30")
            return True
        if match := re.fullmatch(r"(\d+)W", upper):
            _cron_value(match[1], field)
            return True
    if field.name == "day-of-week":
        if upper == "L":
            return True
        if match := re.fullmatch(r"(\w+)L", upper):
            _cron_value(match[1], field)
            return True
        if match := re.fullmatch(r"(\w+)#(\d+)", upper):
            _cron_value(match[1], field)
            if not 1 <= int(match[2]) <= 5:
                raise _CronFieldError("the n in day#n must be 1-5")
            return True
    if field.name.startswith("day-of") and re.search(r"[LW#]", upper.replace("WED", "")):
        raise _CronFieldError("L, W and # forms must be the field's only item")
    return False


def validate_quartz_cron(expr: str) -> None:
    """A Quartz cron expression as Databricks schedules take them; UsageError otherwise."""
    if not isinstance(expr, str):
        raise UsageError(f"{quoted(expr)} is not a Quartz cron expression; for example {_CRON_EXAMPLE}")
    fields = expr.split()
    if len(fields) not in (6, 7):
        raise UsageError(
            f"{quoted(expr)} is not a Quartz cron expression: it has {len(fields)} fields, expected 6 or 7 "
            f"(seconds minutes hours day-of-month month day-of-week [year]); for example {_CRON_EXAMPLE}"
        )
    for text, field in zip(fields, _CRON_FIELDS[: len(fields)], strict=True):
        try:
            if text == "?":
                if field.name not in ("day-of-month", "day-of-week"):
                    raise _CronFieldError("'?' is only allowed in day-of-month or day-of-week")
                continue
            if _cron_special(text, field):
                continue
            for item in text.split(","):
                if not item:
                    raise _CronFieldError("empty list item")
                _cron_item(item, field)
        except _CronFieldError as error:
            raise UsageError(
                f"{quoted(expr)} is not a Quartz cron expression: {field.name} {text!r}: {error}"
            ) from None
    if (fields[3] == "?") == (fields[5] == "?"):
        raise UsageError(
            f"{quoted(expr)} is not a Quartz cron expression: exactly one of day-of-month and "
            f"day-of-week must be '?'; for example {_CRON_EXAMPLE}"
        )
