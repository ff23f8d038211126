"""A switch that loops to itself until a counter reaches its limit."""

from flowkernel import FlowSpec, step


class RecursiveSwitchFlow(FlowSpec):
    @step
    def start(self):
        self.count = 0
        self.next(self.loop)

    @step
    def loop(self):
        """Count up; go round again until three passes are done."""
        self.count += 1
        self.status = "done" if self.count >= 3 else "again"
        self.next({"again": self.loop, "done": self.end}, condition="status")

    @step
    def end(self):
        assert self.count == 3
        print("looped", self.count, "times")


if __name__ == "__main__":
    RecursiveSwitchFlow()
