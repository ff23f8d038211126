from flowkernel import FlowSpec, step


class BranchEscapesSplitFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.a, self.b)

    @step
    def a(self):
        self.c = "x"
        self.next({"x": self.a2, "y": self.a3}, condition="c")

    @step
    def a2(self):
        self.next(self.j)

    @step
    def a3(self):
        self.next(self.end)

    @step
    def b(self):
        self.next(self.j)

    @step
    def j(self, inputs):
        self.next(self.end)

    @step
    def end(self):  # expect: multiple-parents
        pass
