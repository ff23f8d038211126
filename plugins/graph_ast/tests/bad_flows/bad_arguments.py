from flowkernel import FlowSpec, step


class BadArgumentsFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.a, self.b)

    @step
    def a(self):
        self.next(self.merge_and_split)

    @step
    def b(self):
        self.next(self.merge_and_split)

    @step
    def merge_and_split(self, inputs):  # expect: join-and-split
        self.next(self.c, self.d)

    @step
    def c(self, inputs, extra):  # expect: too-many-arguments
        self.next(self.join)

    @step
    def d():  # expect: missing-self-argument
        self.next(self.join)  # noqa: F821

    @step
    def join(self, inputs):
        self.next(self.end)

    @step
    def end(self):
        pass
