from flowkernel import FlowSpec, step


class SeveralEndsFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.one, self.two)

    @step(end=True)
    def one(self):
        pass

    @step(end=True)
    def two(self):  # expect: several-end-steps
        pass
