from flowkernel import FlowSpec, step


class AmbiguousStartFlow(FlowSpec):
    @step(start=True)
    def begin(self):
        self.next(self.end)

    @step
    def start(self):  # expect: ambiguous-start-end, unreachable-step
        self.next(self.end)

    @step
    def end(self):
        pass
