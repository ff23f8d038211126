"""A foreach whose body step can be spun: FACTOR is edited between the run and the spin."""

import os

from flowkernel import FlowSpec, environment, step

FACTOR = 1


class SpinFlow(FlowSpec):
    @step
    def start(self):
        self.items = [1, 2, 3]
        self.next(self.scale, foreach="items")

    @environment(vars={"SPIN_MARK": "decorated"})
    @step
    def scale(self):
        self.result = self.input * FACTOR
        self.mark = os.environ.get("SPIN_MARK")
        print(f"scaled {self.input} by {FACTOR}")
        self.next(self.join)

    @step
    def join(self, inputs):
        self.results = [i.result for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    SpinFlow()
