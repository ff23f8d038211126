from flowkernel import FlowSpec, step


class SwitchRepeatedCaseFlow(FlowSpec):
    @step
    def start(self):
        self.choice = "a"
        self.next({"a": self.x, "a": self.end}, condition="choice")  # noqa: F601  # expect: bad-switch

    @step
    def x(self):
        self.next(self.end)

    @step
    def end(self):
        pass
