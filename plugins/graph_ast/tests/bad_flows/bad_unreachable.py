from flowkernel import FlowSpec, step


class UnreachableFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.end)

    @step
    def forgotten(self):  # expect: unreachable-step
        self.next(self.end)

    @step
    def end(self):
        pass
