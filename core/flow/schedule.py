"""``@schedule``: when a deployed flow runs on its own (a scheduler's cron, e.g. a CronWorkflow).

Metaflow's flow decorator: ``@schedule(daily=True)``, ``hourly=True``, ``weekly=True`` or
``cron="..."``, with an optional IANA ``timezone``. A cron is the usual five fields (minute hour
day-of-month month day-of-week); Metaflow's six-field AWS form is accepted and its year field
dropped. It changes nothing for ``flow run``: deployers read it.
"""

from __future__ import annotations

from typing import Any

import attrs

from flowkernel.errors import DecoratorError

PRESETS = {"hourly": "0 * * * *", "daily": "0 0 * * *", "weekly": "0 0 * * 0"}


@attrs.frozen
class Schedule:
    """What ``@schedule`` records on the flow class (``flow_cls._fk_schedule``)."""

    cron: str  #: five fields
    timezone: str | None = None


def schedule(
    cls: type | None = None,
    *,
    cron: str | None = None,
    daily: bool = False,
    hourly: bool = False,
    weekly: bool = False,
    timezone: str | None = None,
    **unknown: Any,
) -> Any:
    """Flow decorator: ``@schedule(daily=True)``, ``@schedule(cron="*/15 * * * *")``, ..."""
    if unknown:
        raise DecoratorError(
            f"Unknown decorator attribute {', '.join(repr(k) for k in sorted(unknown))} for "
            "@schedule; supported: cron, daily, hourly, weekly, timezone"
        )
    chosen = [k for k, on in (("hourly", hourly), ("daily", daily), ("weekly", weekly)) if on]
    if len(chosen) + (cron is not None) != 1:
        raise DecoratorError(
            "@schedule needs exactly one of cron='...', hourly=True, daily=True, weekly=True"
        )
    expression = PRESETS[chosen[0]] if chosen else _five_fields(cron)
    if timezone is not None:
        _check_timezone(timezone)
    record = Schedule(expression, timezone)

    def mark(flow_cls: type) -> type:
        if "_fk_schedule" in flow_cls.__dict__:
            raise DecoratorError(f"flow {flow_cls.__name__} has @schedule twice")
        flow_cls._fk_schedule = record
        return flow_cls

    return mark(cls) if cls is not None else mark


def _five_fields(cron: Any) -> str:
    fields = str(cron).split() if isinstance(cron, str) else []
    if len(fields) == 6:  # Metaflow's AWS form: minute hour day month weekday year
        fields = fields[:5]
    if len(fields) != 5:
        raise DecoratorError(
            f"@schedule(cron={cron!r}): a cron has five fields "
            "(minute hour day-of-month month day-of-week)"
        )
    return " ".join(fields)


def _check_timezone(name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DecoratorError(f"@schedule(timezone={name!r}): not an IANA time zone") from None


def flow_schedule(flow_cls: type) -> Schedule | None:
    """The schedule of ``flow_cls``, or None."""
    return getattr(flow_cls, "_fk_schedule", None)
