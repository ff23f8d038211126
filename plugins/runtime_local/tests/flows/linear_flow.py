"""start -> a -> end: artifacts flow down a linear chain."""

from flowkernel import FlowSpec, step


class LinearFlow(FlowSpec):
    @step
    def start(self):
        self.x = 1
        self.seen = ["start"]
        self.next(self.a)

    @step
    def a(self):
        self.x += 1
        self.seen = [*self.seen, "a"]
        self.next(self.end)

    @step
    def end(self):
        self.seen = [*self.seen, "end"]


if __name__ == "__main__":
    LinearFlow()
