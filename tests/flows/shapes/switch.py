"""A switch: exactly one of two branches runs, chosen by an artifact."""

from flowkernel import FlowSpec, Parameter, step


class SwitchFlow(FlowSpec):
    size = Parameter("size", default=5, help="how big the input is")

    @step
    def start(self):
        self.choice = "small" if self.size < 10 else "large"
        self.next({"small": self.small, "large": self.large}, condition="choice")

    @step
    def small(self):
        self.result = "handled small"
        self.next(self.end)

    @step
    def large(self):
        self.result = "handled large"
        self.next(self.end)

    @step
    def end(self):
        print(self.result)


if __name__ == "__main__":
    SwitchFlow()
