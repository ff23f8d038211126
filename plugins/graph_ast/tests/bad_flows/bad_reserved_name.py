from flowkernel import FlowSpec, step


class ReservedNameFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.cmd)

    @step
    def cmd(self):  # expect: reserved-step-name
        self.next(self.end)

    @step
    def end(self):
        pass
