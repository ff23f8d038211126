"""A flow touching every client object: a foreach, a static split, a hidden artifact, logs."""

import sys
import time

from flowkernel import FlowSpec, step


class SurfaceFlow(FlowSpec):
    @step
    def start(self):
        self.items = ["x", "y", "z"]
        self.step_names = [s.name for s in self]  # the flow graph, navigated from a task
        self._hidden = "kept but not listed"
        print("starting", flush=True)
        time.sleep(0.2)  # the two lines arrive at visibly different times
        print("started")
        print("a warning", file=sys.stderr)
        self.next(self.each, foreach="items")

    @step
    def each(self):
        self.letter = self.input.upper()
        self.next(self.gather)

    @step
    def gather(self, inputs):
        self.letters = [i.letter for i in inputs]
        self._hidden = inputs[0]._hidden + "!"
        self.next(self.fork)

    @step
    def fork(self):
        self.next(self.left, self.right)

    @step
    def left(self):
        self.side = "left"
        self.next(self.meet)

    @step
    def right(self):
        self.side = "right"
        self.next(self.meet)

    @step
    def meet(self, inputs):
        self.sides = sorted(i.side for i in inputs)
        self.merge_artifacts(inputs, exclude=["side"])
        self.next(self.end)

    @step
    def end(self):
        print("done:", self.letters, self.sides)


if __name__ == "__main__":
    SurfaceFlow()
