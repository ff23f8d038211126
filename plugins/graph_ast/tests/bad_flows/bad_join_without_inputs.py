from flowkernel import FlowSpec, step


class JoinWithoutInputsFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.a, self.b)

    @step
    def a(self):
        self.next(self.merge)

    @step
    def b(self):
        self.next(self.merge)

    @step
    def merge(self):  # expect: multiple-parents
        self.next(self.end)

    @step
    def end(self):
        pass
