from flowkernel import FlowSpec, step


class SwitchOneBranchFlow(FlowSpec):
    @step
    def start(self):
        self.choice = "a"
        self.next({"a": self.end, "b": self.end}, condition="choice")  # expect: bad-switch

    @step
    def end(self):
        pass
