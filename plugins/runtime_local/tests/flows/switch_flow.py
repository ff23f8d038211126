"""A switch: exactly one of three cases runs, chosen by a parameter."""

from flowkernel import FlowSpec, Parameter, step


class SwitchFlow(FlowSpec):
    case = Parameter("case", default="case2")

    @step
    def start(self):
        self.choice = self.case
        self.next({"case1": self.a, "case2": self.b, "case3": self.c}, condition="choice")

    @step
    def a(self):
        self.handled_by = "a"
        self.next(self.end)

    @step
    def b(self):
        self.handled_by = "b"
        self.next(self.end)

    @step
    def c(self):
        self.handled_by = "c"
        self.next(self.end)

    @step
    def end(self):
        self.result = f"{self.choice} -> {self.handled_by}"


if __name__ == "__main__":
    SwitchFlow()
