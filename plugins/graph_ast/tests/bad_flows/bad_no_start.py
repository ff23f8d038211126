from flowkernel import FlowSpec, step


class NoStartFlow(FlowSpec):  # expect: no-start-step
    @step
    def begin(self):
        self.next(self.end)

    @step
    def end(self):
        pass
