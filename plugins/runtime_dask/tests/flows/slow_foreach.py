"""A foreach whose tasks each leave a marker ``<index>.<pid>.<worker pid>`` in
``FLOWKERNEL_TEST_MARKERS`` and then sleep ``FLOWKERNEL_TEST_SLEEP`` seconds, or wait until
the file ``FLOWKERNEL_TEST_RELEASE`` exists; the item ``FLOWKERNEL_TEST_FAIL`` (if set)
raises."""

import os
import time

from flowkernel import FlowSpec, Parameter, step


class DaskSlowForeachFlow(FlowSpec):
    items = Parameter("items", default=4, type=int)

    @step
    def start(self):
        self.values = list(range(self.items))
        self.next(self.work, foreach="values")

    @step
    def work(self):
        print(f"work on item {self.input} starts")
        markers = os.environ.get("FLOWKERNEL_TEST_MARKERS")
        if markers:
            name = f"{self.input}.{os.getpid()}.{os.getppid()}"
            with open(os.path.join(markers, name), "w"):
                pass
        time.sleep(float(os.environ.get("FLOWKERNEL_TEST_SLEEP", "0")))
        release = os.environ.get("FLOWKERNEL_TEST_RELEASE")
        while release and not os.path.exists(release):
            time.sleep(0.05)
        if os.environ.get("FLOWKERNEL_TEST_FAIL") == str(self.input):
            raise RuntimeError(f"item {self.input} fails on purpose")
        self.square = self.input * self.input
        print(f"square of {self.input} is {self.square}")
        self.next(self.join)

    @step
    def join(self, inputs):
        self.squares = [inp.square for inp in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    DaskSlowForeachFlow()
