from flowkernel import FlowSpec, step


class SwitchToJoinFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.a, self.b)

    @step
    def a(self):
        self.choice = "x"
        self.next({"x": self.join, "y": self.c}, condition="choice")  # expect: switch-to-join

    @step
    def c(self):
        self.next(self.join)

    @step
    def b(self):
        self.next(self.join)

    @step
    def join(self, inputs):
        self.next(self.end)

    @step
    def end(self):
        pass
