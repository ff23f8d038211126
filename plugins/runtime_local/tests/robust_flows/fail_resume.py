"""A branch fails while its sibling sleeps (with child processes); fixed, the run resumes.

start -> prep -> (boom | sleeper) -> join -> end. Until ROBUST_FIXED=1, `sleeper` starts a
child and an orphaned grandchild, then sleeps, and `boom` raises once the test (which waited
for the sleeper and listed the processes) creates the marker go.boom.<run>.
"""

import os
import subprocess
import time

from robust_flowlib import fixed, mark, touch, wait_for_marker

from flowkernel import FlowSpec, Parameter, current, step


class FailResumeFlow(FlowSpec):
    alpha = Parameter("alpha", default=1, help="Doubled by prep.")

    @step
    def start(self):
        mark("start")
        self.token = os.urandom(8).hex()  # a fresh value on every execution
        self.next(self.prep)

    @step
    def prep(self):
        mark("prep")
        self.doubled = self.alpha * 2
        self.prep_token = os.urandom(8).hex()
        self.next(self.boom, self.sleeper)

    @step
    def boom(self):
        mark("boom")
        print("boom is checking its input")
        if not fixed():
            wait_for_marker(f"go.boom.{current.run_id}")  # the test saw every process
            raise ValueError("boom: the input was bad")
        self.outcome = "fixed"
        self.next(self.join)

    @step
    def sleeper(self):
        mark("sleeper")
        if not fixed():
            child = subprocess.Popen(["sleep", "60"])
            # an orphan: `sh` exits at once, its `sleep` is re-parented but stays in our group
            subprocess.run(["sh", "-c", "sleep 61 >/dev/null 2>&1 &"], check=True)
            touch(f"ready.sleeper.{current.run_id}", str(child.pid))
            time.sleep(60)
        self.slept = True
        self.next(self.join)

    @step
    def join(self, inputs):
        mark("join")
        self.outcome = inputs.boom.outcome
        self.merge_artifacts(inputs, include=["token", "doubled", "prep_token"])
        self.next(self.end)

    @step
    def end(self):
        mark("end")
        self.origin = current.origin_run_id
        print("outcome", self.outcome, "doubled", self.doubled)


if __name__ == "__main__":
    FailResumeFlow()
