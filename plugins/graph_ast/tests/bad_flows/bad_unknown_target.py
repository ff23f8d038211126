from flowkernel import FlowSpec, step


class UnknownTargetFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.proces)  # expect: unknown-target

    @step
    def process(self):
        self.next(self.end)

    @step
    def end(self):
        pass
