"""A recursive switch inside each task of a foreach: each item counts down to zero."""

from flowkernel import FlowSpec, step


class RecursiveSwitchInsideForeachFlow(FlowSpec):
    @step
    def start(self):
        self.limits = [1, 3]
        self.next(self.prepare, foreach="limits")

    @step
    def prepare(self):
        self.remaining = self.input
        self.steps_taken = 0
        self.next(self.countdown)

    @step
    def countdown(self):
        self.remaining -= 1
        self.steps_taken += 1
        self.state = "again" if self.remaining > 0 else "done"
        self.next({"again": self.countdown, "done": self.finish}, condition="state")

    @step
    def finish(self):
        self.next(self.join)

    @step
    def join(self, inputs):
        self.steps = [inp.steps_taken for inp in inputs]
        self.next(self.end)

    @step
    def end(self):
        assert self.steps == [1, 3]
        print(self.steps)


if __name__ == "__main__":
    RecursiveSwitchInsideForeachFlow()
