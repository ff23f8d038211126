"""The smallest flow: start -> end (fixed cost of a run)."""

from flowkernel import FlowSpec, step


class StartEndFlow(FlowSpec):
    @step
    def start(self):
        self.x = 1
        self.next(self.end)

    @step
    def end(self):
        assert self.x == 1


if __name__ == "__main__":
    StartEndFlow()
