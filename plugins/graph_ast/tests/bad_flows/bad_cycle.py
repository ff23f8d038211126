from flowkernel import FlowSpec, step


class CycleFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.a)

    @step
    def a(self):
        self.next(self.b)

    @step
    def b(self):
        self.next(self.a)  # expect: cycle

    @step
    def c(self):
        self.next(self.c)  # expect: cycle

    @step
    def end(self):
        pass
