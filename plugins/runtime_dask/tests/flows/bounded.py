"""A foreach whose tasks each stay running until another task runs beside them, or until the
file ``go`` appears in ``FLOWKERNEL_TEST_MARKERS``; each records how many ran at once."""

import os
import time

from flowkernel import FlowSpec, Parameter, step


class DaskBoundedFlow(FlowSpec):
    items = Parameter("items", default=3, type=int)

    @step
    def start(self):
        self.values = list(range(self.items))
        self.next(self.work, foreach="values")

    @step
    def work(self):
        markers = os.environ["FLOWKERNEL_TEST_MARKERS"]
        running = os.path.join(markers, "running")
        os.makedirs(running, exist_ok=True)
        me = os.path.join(running, str(self.input))
        open(me, "w").close()
        go = os.path.join(markers, "go")
        while not os.path.exists(go) and len(os.listdir(running)) < 2:
            time.sleep(0.01)
        self.together = len(os.listdir(running))
        os.unlink(me)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.together = [i.together for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    DaskBoundedFlow()
