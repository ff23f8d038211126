"""``@schedule``: Metaflow's flow decorator, read by deployers; it changes nothing for a run."""

from __future__ import annotations

import pytest

from flowkernel import FlowSpec, schedule, step
from flowkernel.errors import DecoratorError
from flowkernel.flow.schedule import Schedule, flow_schedule


def _flow(decorator):
    @decorator
    class ScheduledFlow(FlowSpec):
        @step
        def start(self):
            self.next(self.end)

        @step
        def end(self):
            pass

    return ScheduledFlow


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"hourly": True}, Schedule("0 * * * *")),
        ({"daily": True}, Schedule("0 0 * * *")),
        ({"weekly": True}, Schedule("0 0 * * 0")),
        ({"cron": "*/5 1 * * 1-5"}, Schedule("*/5 1 * * 1-5")),
        ({"cron": "0 10 * * ? *", "timezone": "Asia/Tokyo"}, Schedule("0 10 * * ?", "Asia/Tokyo")),
    ],
)
def test_schedule_forms(kwargs, expected):
    assert flow_schedule(_flow(schedule(**kwargs))) == expected


def test_a_flow_without_schedule_has_none():
    assert flow_schedule(FlowSpec) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of cron="),
        ({"daily": True, "hourly": True}, "exactly one of cron="),
        ({"cron": "* * *"}, "a cron has five fields"),
        ({"daily": True, "timezone": "Mars/Olympus"}, "not an IANA time zone"),
        ({"daily": True, "every": 3}, "Unknown decorator attribute 'every' for @schedule"),
    ],
)
def test_bad_schedules_are_clear_errors(kwargs, message):
    with pytest.raises(DecoratorError, match=message):
        schedule(**kwargs)
