"""NBRunner in a real Jupyter kernel: notebooks built with nbformat, executed with nbclient."""

from __future__ import annotations

import nbformat

from flowkernel.testing_procs import processes_mentioning

from .conftest import REPO, Interrupt

EXAMPLE = REPO / "examples" / "notebook.ipynb"

IMPORTS = """
import json
from flowkernel import FlowSpec, NBRunner, Parameter, step
"""

COUNT_FLOW = """
class CountFlow(FlowSpec):
    n = Parameter("n", default=2)

    @step
    def start(self):
        self.items = list(range(self.n))
        print("start sees", self.n)
        self.next(self.end)

    @step
    def end(self):
        self.encoded = json.dumps({"items": self.items})  # json comes from the first cell
        print("encoded", self.encoded)
"""


def test_imports_class_and_run_in_three_cells(run_notebook, tmp_path):
    done = run_notebook(
        [
            IMPORTS,
            COUNT_FLOW,
            """
            run = NBRunner(CountFlow).nbrun(n=3)
            print("result:", run.successful, run.data.encoded)
            import sys
            print("kernel imported the flow file:", any("_nb_" in m for m in sys.modules))
            """,
            """
            try:
                NBRunner(CountFlow).nbrun(m=3)
            except ValueError as exc:
                print("refused:", exc)
            """,
        ]
    )
    assert "refused: unknown parameter 'm'; the flow's parameters are: n" in done.text(3)
    out = done.text(2)
    assert 'result: True {"items": [0, 1, 2]}' in out
    assert "start sees 3" in out and 'encoded {"items": [0, 1, 2]}' in out  # the flow's output
    assert "start sees" not in done.text(0) + done.text(1)
    assert "kernel imported the flow file: False" in out  # parameters checked on the class
    assert list(tmp_path.glob("CountFlow_nb_*.py")) == []  # nbrun removed its flow file
    assert (tmp_path / ".flowkernel" / "CountFlow").is_dir()  # the notebook's directory


def test_class_and_run_in_one_cell_with_magics(run_notebook):
    done = run_notebook(
        [
            """
            %time x = 1
            !echo shell says hi
            from flowkernel import FlowSpec, NBRunner, step

            class MagicFlow(FlowSpec):
                @step
                def start(self):
                    self.word = "magic"
                    self.next(self.end)

                @step
                def end(self):
                    print("word is", self.word)

            run = NBRunner(MagicFlow).nbrun()
            print("result:", run.successful, run.data.word)
            """
        ]
    )
    out = done.text(0)
    assert "shell says hi" in out and "word is magic" in out
    assert "result: True magic" in out


REDEF = """
class RedefFlow(FlowSpec):
    @step
    def start(self):
        self.version = {version}
        self.next(self.end)

    @step
    def end(self):
        pass
"""


def test_the_newest_definition_runs_and_an_old_object_runs_its_own(run_notebook):
    done = run_notebook(
        [
            IMPORTS,
            REDEF.format(version=1),
            "first = RedefFlow",
            REDEF.format(version=2),
            'print("newest:", NBRunner(RedefFlow).nbrun().data.version)',
            'print("kept object:", NBRunner(first).nbrun().data.version)',
            REDEF.format(version=1),  # the first cell again
            'print("rerun cell:", NBRunner(RedefFlow).nbrun().data.version)',
        ]
    )
    assert "newest: 2" in done.text(4)
    assert "kept object: 1" in done.text(5)
    assert "rerun cell: 1" in done.text(7)


def test_a_helper_from_another_cell_is_reported_before_anything_starts(run_notebook, tmp_path):
    done = run_notebook(
        [
            IMPORTS,
            """
            def helper(x):
                return x * 2

            SCALE = 3
            """,
            """
            class HelperFlow(FlowSpec):
                @step
                def start(self):
                    self.value = helper(SCALE) + len(json.dumps([]))
                    self.next(self.end)

                @step
                def end(self):
                    pass
            """,
            """
            from flowkernel_notebook import NotebookSourceError
            try:
                NBRunner(HelperFlow)
            except NotebookSourceError as exc:
                print("refused:", exc)
            """,
        ]
    )
    out = done.text(3)
    assert "refused: HelperFlow (cell In [3]) uses names defined in other cells" in out
    assert "SCALE (In [2]), helper (In [2])" in out
    assert not (tmp_path / ".flowkernel").exists()  # nothing started
    assert list(tmp_path.glob("*.py")) == []


def test_a_class_without_findable_source_gets_a_clear_error(run_notebook):
    done = run_notebook(
        [
            IMPORTS + "from flowkernel_notebook import NotebookSourceError",
            """
            %%time
            class TimedFlow(FlowSpec):
                @step
                def start(self):
                    self.next(self.end)

                @step
                def end(self):
                    pass
            """,
            """
            exec('''
            class ExecFlow(FlowSpec):
                @step
                def start(self):
                    self.next(self.end)

                @step
                def end(self):
                    pass
            ''')
            """,
            """
            for cls in (TimedFlow, ExecFlow):
                try:
                    NBRunner(cls)
                except NotebookSourceError as exc:
                    print("refused:", exc)
            """,
        ]
    )
    out = done.text(3)
    for name in ("TimedFlow", "ExecFlow"):
        assert f"refused: cannot find the source of flow class {name}" in out
    assert "without cell magics" in out


RESUME_FLOW = """
import os

class ResumeFlow(FlowSpec):
    @step
    def start(self):
        print("start ran")
        self.base = 20
        self.next(self.middle)

    @step
    def middle(self):
        if os.path.exists("fail.flag"):
            raise RuntimeError("fail.flag is set")
        self.total = self.base + 1
        self.next(self.end)

    @step
    def end(self):
        pass
"""


def test_nbresume_after_a_failure(run_notebook):
    done = run_notebook(
        [
            IMPORTS,
            RESUME_FLOW,
            """
            open("fail.flag", "w").close()
            first = NBRunner(ResumeFlow).nbrun()
            print("first:", first.successful)
            """,
            """
            os.remove("fail.flag")
            second = NBRunner(ResumeFlow).nbresume()
            print("second:", second.successful, second.data.total, second.id != first.id)
            """,
        ]
    )
    assert "first: False" in done.text(2)
    assert "fail.flag is set" in done.text(2) + done.text(2, "stderr")
    out = done.text(3)
    assert "second: True 21 True" in out
    assert "Cloned from the origin run: start" in out
    assert "start ran" not in out  # start was cloned, not run again


TICK_FLOW = """
import time

class TickFlow(FlowSpec):
    ticks = Parameter("ticks", default=3)

    @step
    def start(self):
        for i in range(self.ticks):
            print("tick", i, flush=True)
            time.sleep(0.8)
        self.next(self.end)

    @step
    def end(self):
        pass
"""


def test_output_streams_into_the_calling_cell_while_the_flow_runs(run_notebook):
    done = run_notebook(
        [IMPORTS, TICK_FLOW, "NBRunner(TickFlow).nbrun(ticks=3)", 'print("next cell")']
    )
    ticks = [a for a in done.arrivals if "tick " in a.text]
    assert {a.cell for a in ticks} == {2}
    assert "tick 0" in ticks[0].text and "tick 2" in ticks[-1].text
    # line by line while it runs: the first tick came well before the last one, and all of
    # them before the cell ended
    assert ticks[-1].at - ticks[0].at > 1.0
    assert ticks[-1].at <= done.finished_at[2]
    assert done.text(3) == "next cell\n"


def test_async_run_and_stream_log_awaited_in_a_cell(run_notebook):
    done = run_notebook(
        [
            IMPORTS,
            TICK_FLOW,
            """
            import asyncio
            asyncio.get_running_loop()  # cells run inside an event loop
            runner = NBRunner(TickFlow)
            execution = await runner.async_run(ticks=2)
            print("started:", execution.status)
            async for position, line in execution.stream_log("stdout"):
                if "tick" in line:
                    print("relayed:", line.split("] ")[-1])
            await execution.wait()
            print("finished:", execution.status, execution.run.successful)
            runner.cleanup()
            """,
        ]
    )
    out = done.text(2)
    assert "started: running" in out
    assert "relayed: tick 0\nrelayed: tick 1\n" in out
    assert "finished: successful True" in out


def test_interrupting_the_kernel_stops_the_run_and_leaves_it_resumable(run_notebook, tmp_path):
    done = run_notebook(
        [
            IMPORTS,
            """
            import os, time

            class SlowFlow(FlowSpec):
                @step
                def start(self):
                    self.next(self.slow)

                @step
                def slow(self):
                    open("started.flag", "w").close()
                    if os.path.exists("hold.flag"):
                        time.sleep(600)
                    self.done = "yes"
                    self.next(self.end)

                @step
                def end(self):
                    pass
            """,
            """
            open("hold.flag", "w").close()
            NBRunner(SlowFlow).nbrun()
            """,
            """
            from flowkernel import Flow
            interrupted = Flow("SlowFlow").latest_run
            print("interrupted run:", interrupted.successful, interrupted.finished)
            os.remove("hold.flag")
            resumed = NBRunner(SlowFlow).nbresume()
            print("resumed:", resumed.successful, resumed.data.done)
            """,
        ],
        interrupt=Interrupt(cell=2, ready=lambda: (tmp_path / "started.flag").exists()),
    )
    error = done.error(2)
    assert error is not None and error["ename"] == "KeyboardInterrupt"
    assert "recorded as failed; nbresume() continues it" in done.text(2, "stderr")
    assert "Workflow interrupted" in done.text(2)
    assert done.error(3) is None, done.error(3)
    assert "interrupted run: False False" in done.text(3)
    assert "resumed: True yes" in done.text(3)
    assert processes_mentioning(str(tmp_path)) == []


def test_a_flow_class_and_an_nbrunner_display_their_graph(run_notebook):
    done = run_notebook(
        [IMPORTS, COUNT_FLOW, "CountFlow", "NBRunner(CountFlow)", "class Plain: pass\nPlain"]
    )
    for index in (2, 3):
        (markdown,) = done.data(index, "text/markdown")
        assert "```mermaid" in markdown and "step_start --> step_end" in markdown
        (svg,) = done.data(index, "image/svg+xml")  # for front ends without Mermaid (VS Code)
        assert svg.startswith("<svg") and ">start</text>" in svg and ">end</text>" in svg
    assert "NBRunner(CountFlow)" in done.data(3, "text/markdown")[0]
    assert done.data(4, "text/markdown") == [] and done.data(4, "image/svg+xml") == []


def test_the_example_notebook_runs(run_notebook, kernel_name):
    nb = nbformat.read(EXAMPLE, as_version=4)
    nb.metadata["kernelspec"]["name"] = kernel_name
    done = run_notebook(nb)
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    graph, blocking, streamed = code[2], code[3], code[4]
    assert "step_count --> step_join" in done.data(graph, "text/markdown")[0]
    report = '{"be": 2, "not": 1, "or": 1, "to": 2}'
    assert f"True {report}" in done.text(blocking)
    assert "counted 3 words" in done.text(blocking)  # the flow's own output, in this cell
    assert done.text(streamed).endswith("successful\n")
    assert '"the": 3' in done.text(streamed)


def test_nbdeployer_deploys_and_triggers_with_the_tutorial_deployer(
    run_notebook, local_deployer_site, monkeypatch, tmp_path
):
    monkeypatch.setenv("PYTHONPATH", str(local_deployer_site))  # the kernel and its children
    done = run_notebook(
        [
            IMPORTS + "from flowkernel import NBDeployer",
            COUNT_FLOW,
            """
            import time
            with NBDeployer(CountFlow) as deployer:
                deployed = deployer.local_deployer(name="nb-count").create()
            print("deployed:", deployed.name, deployed.flow_name)
            triggered = deployed.trigger(n=4)
            run = triggered.wait_for_run(timeout=60)
            deadline = time.monotonic() + 60
            while triggered.status in ("pending", "running") and time.monotonic() < deadline:
                time.sleep(0.2)
            print("triggered:", triggered.status, run.data.encoded)
            import sys
            print("kernel imported the flow file:", any("_nb_" in m for m in sys.modules))
            """,
            """
            from flowkernel.deployer import DeployedFlow
            found = DeployedFlow.from_deployment(
                "nb-count", impl="local-deployer", metadata=deployed.metadata
            )
            print("found:", found.flow_name, found.delete())
            """,
        ]
    )
    assert "deployed: nb-count CountFlow" in done.text(2)
    assert 'triggered: successful {"items": [0, 1, 2, 3]}' in done.text(2)
    assert "found: CountFlow True" in done.text(3)
    assert "kernel imported the flow file: False" in done.text(2)  # cell statements ran once
    assert list(tmp_path.glob("CountFlow_nb_*.py")) == []  # the context manager cleaned up


SLEEPY_FLOW = """
import time

class SleepyFlow(FlowSpec):
    @step
    def start(self):
        open("started.flag", "w").close()
        time.sleep(600)
        self.next(self.end)

    @step
    def end(self):
        pass
"""


def test_interrupting_an_awaited_async_run_stops_it(run_notebook, tmp_path):
    done = run_notebook(
        [
            IMPORTS,
            SLEEPY_FLOW,
            "runner = NBRunner(SleepyFlow)\nexecution = await runner.async_run()\n"
            "await execution.wait()",
            'print("after:", execution.status, execution.run.successful)',
        ],
        interrupt=Interrupt(cell=2, ready=lambda: (tmp_path / "started.flag").exists()),
    )
    assert done.error(2) is not None  # the cell was interrupted
    assert "was stopped and is recorded as failed" in done.text(2, "stderr")
    assert "after: failed False" in done.text(3)


def test_a_run_still_going_when_the_kernel_shuts_down_is_stopped(run_notebook, tmp_path):
    # run_notebook fails the test if any process of the run is left after the kernel is gone
    done = run_notebook(
        [
            IMPORTS,
            SLEEPY_FLOW,
            "execution = await NBRunner(SleepyFlow).async_run()",
            """
            import os, time
            while not os.path.exists("started.flag"):
                time.sleep(0.05)
            print("started:", execution.status)
            """,
        ]
    )
    assert "started: running" in done.text(3)
    assert not list(tmp_path.glob("SleepyFlow_nb_*.py"))  # the flow file went with the kernel
