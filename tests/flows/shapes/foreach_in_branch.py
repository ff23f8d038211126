"""A static split whose one branch is a foreach."""

from flowkernel import FlowSpec, step


class ForeachInBranchFlow(FlowSpec):
    @step
    def start(self):
        self.numbers = [1, 2, 3]
        self.next(self.fan_out, self.constant)

    @step
    def fan_out(self):
        self.next(self.work, foreach="numbers")

    @step
    def work(self):
        self.value = self.input * 10
        self.next(self.gather)

    @step
    def gather(self, inputs):
        self.value = sum(inp.value for inp in inputs)
        self.next(self.join)

    @step
    def constant(self):
        self.value = 5
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = inputs.gather.value + inputs.constant.value
        self.next(self.end)

    @step
    def end(self):
        assert self.total == 65
        print("total", self.total)


if __name__ == "__main__":
    ForeachInBranchFlow()
