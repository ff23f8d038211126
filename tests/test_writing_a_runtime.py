"""The example runtime of docs/writing-a-runtime.md, run from the page itself on every graph shape:
each run must match the local runtime's (tasks per step, the end task's data and output)."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest

from flowkernel.engine.runtime import Runtime
from flowkernel.kernel import Kernel

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "writing-a-runtime.md"
SHAPES = sorted((ROOT / "tests" / "flows" / "shapes").glob("*.py"))
#: shapes also run with every task in its own `flow step` interpreter (slower)
SUBPROCESS_SHAPES = ("foreach.py", "parallel.py", "recursive_switch_inside_foreach.py")


def _example_plugin() -> types.ModuleType:
    text = PAGE.read_text()
    section = text.split("## A sequential runtime", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    module = types.ModuleType("sequential_runtime_example")
    exec(compile(code, str(PAGE), "exec"), module.__dict__)
    return module


@pytest.fixture(scope="module")
def kernel() -> Kernel:
    return Kernel.discover(plugins=[("sequential_example", _example_plugin())])


def _summary(run) -> dict:
    end = run.end_task
    return {
        "successful": run.successful,
        "tasks": {step.id: len(list(step)) for step in run},
        "data": {name: end[name].data for name in end.data},
        "stdout": end.stdout,
    }


def test_the_example_is_a_runtime(kernel):
    spec = kernel.runtime("sequential")
    assert isinstance(spec.factory(kernel), Runtime)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda p: p.stem)
def test_the_example_runtime_runs_every_shape_like_the_local_one(kernel, tmp_path, shape):
    root = str(tmp_path / "ds")
    local = kernel.run(str(shape), datastore_root=root, runtime="local")
    expected = _summary(local)
    assert expected["successful"]
    runtimes = ["sequential"]
    if shape.name in SUBPROCESS_SHAPES:
        runtimes.append("sequential-subprocess")
    for runtime in runtimes:
        run = kernel.run(str(shape), datastore_root=root, runtime=runtime)
        assert _summary(run) == expected, runtime


def test_the_example_runtime_applies_the_shared_retry_policy(kernel, tmp_path):
    """@retry and @catch behave as on the local runtime: the policy is the dispatcher's."""
    flow = ROOT / "examples" / "retry_catch.py"
    root = str(tmp_path / "ds")
    local = kernel.run(str(flow), datastore_root=root, runtime="local")
    run = kernel.run(str(flow), datastore_root=root, runtime="sequential")
    summary, expected = _summary(run), _summary(local)
    assert summary.pop("data").keys() == expected.pop("data").keys()  # an exception in it
    assert summary == expected
    assert "fragile failed with: builtins.TypeError" in run.end_task.stdout
    attempts = {
        step.id: [task.current_attempt for task in step] for step in run if step.id != "end"
    }
    assert attempts == {
        step.id: [task.current_attempt for task in step] for step in local if step.id != "end"
    }


GANG_BESIDE_FOREACH = """
from flowkernel import FlowSpec, parallel, step


class GangBesideForeachFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.fan, self.gang_start)

    @step
    def fan(self):
        self.items = list(range(4))
        self.next(self.work, foreach="items")

    @step
    def work(self):
        self.next(self.fan_join)

    @step
    def fan_join(self, inputs):
        self.next(self.join)

    @step
    def gang_start(self):
        self.next(self.train, num_parallel=2)

    @parallel
    @step
    def train(self):
        self.next(self.gang_join)

    @step
    def gang_join(self, inputs):
        self.next(self.join)

    @step
    def join(self, inputs):
        self.next(self.end)

    @step
    def end(self):
        pass
"""


def test_a_backend_lookahead_launches_past_max_workers_but_never_around_a_gang(tmp_path):
    """``Backend.lookahead``: attempts in flight reach ``--max-workers + lookahead``; while a
    gang is in flight nothing else is launched beside it, and a gang starts only below
    ``--max-workers`` (the bound without lookahead)."""
    example = _example_plugin()
    seen: list[list] = []  # the attempts in flight after each launch

    class AheadRuntime(example.SequentialRuntime):
        def lookahead(self):
            return 2

        def launch(self, attempt):
            super().launch(attempt)
            seen.append(list(self.pending))

    plugin = types.SimpleNamespace(
        flowkernel_runtimes=example.hookimpl(
            lambda: [example.RuntimeSpec("ahead", AheadRuntime, "Looks ahead.")]
        )
    )
    flow = tmp_path / "gang_beside_foreach.py"
    flow.write_text(GANG_BESIDE_FOREACH)
    kernel = Kernel.discover(plugins=[("ahead_example", plugin)])
    run = kernel.run(str(flow), datastore_root=str(tmp_path / "ds"), runtime="ahead",
                     max_workers=1)  # fmt: skip
    assert run.successful
    assert max(len(pending) for pending in seen) == 3  # 1 + lookahead 2
    for pending in seen:
        gangs = {id(a.group) for a in pending if a.group.gang}
        if gangs:  # only the gang, launched whole when nothing else was in flight
            assert len(gangs) == 1 and all(a.group.gang for a in pending), pending


_WITHDRAW_FLOW = """
from flowkernel import FlowSpec, step


class WithdrawFlow(FlowSpec):
    @step
    def start(self):
        self.items = [0, 1, 2]
        self.next(self.work, foreach="items")

    @step
    def work(self):
        if self.input == 0:
            raise RuntimeError("item 0 is broken")
        self.next(self.join)

    @step
    def join(self, inputs):
        self.next(self.end)

    @step
    def end(self):
        pass
"""


def test_finished_returns_none_for_an_attempt_withdrawn_from_the_backends_queue(tmp_path):
    """A backend with a queue of its own (``lookahead``) that ``reports_starts``: an attempt
    stopped while it waited there is reported ``started=False``; ``Dispatcher.finished``
    returns ``None`` for it (the record of any other attempt), and it leaves nothing."""
    from flowkernel import hookimpl
    from flowkernel.specs import RuntimeSpec

    example = _example_plugin()
    returned: list = []

    class QueueingRuntime(example.SequentialRuntime):
        def lookahead(self):
            return 1  # with --max-workers 1: one attempt waits in `pending`

        def reports_starts(self):
            return True

        def wait(self):
            if self.pending:
                attempt = self.pending.popleft()
                if attempt.spec in self.stopped:  # withdrawn: it never started
                    returned.append(
                        self.dispatcher.finished(attempt, None, stopped=True, started=False)
                    )
                    return
                self.dispatcher.started(attempt)
                returned.append(self.dispatcher.finished(attempt, self.execute(attempt)))

    plugin = types.ModuleType("queueing_runtime")
    plugin.flowkernel_runtimes = hookimpl(
        lambda: [RuntimeSpec("queueing", QueueingRuntime, "a sequential runtime with a queue")]
    )
    kernel = Kernel.discover(plugins=[("queueing", plugin)])
    flow = tmp_path / "withdraw.py"
    flow.write_text(_WITHDRAW_FLOW)
    root = tmp_path / "ds"
    run = kernel.run(str(flow), datastore_root=str(root), runtime="queueing", max_workers=1)
    assert not run.successful
    # start, item 0 (failed: the run fails), item 1 (queued, then withdrawn)
    assert [r and (r.step, r.task_ok) for r in returned] == [("start", True), ("work", False), None]
    assert [task.id for task in run["work"]] == ["2"]
    assert sorted(p.name for p in (root / "WithdrawFlow" / run.id / "work").iterdir()) == ["2"]
