from flowkernel import FlowSpec, step


class SeveralStartsFlow(FlowSpec):
    @step(start=True)
    def first(self):
        self.next(self.end)

    @step(start=True)
    def second(self):  # expect: several-start-steps
        self.next(self.end)

    @step
    def end(self):
        pass
