from flowkernel import FlowSpec, step


class BadStepNamesFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.Load)

    @step
    def Load(self):  # expect: invalid-step-name
        self.next(self._private)

    @step
    def _private(self):  # expect: invalid-step-name
        self.next(self.end)

    @step
    def end(self):
        pass
