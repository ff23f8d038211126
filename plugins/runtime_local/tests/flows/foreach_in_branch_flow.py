"""start -> {fan -> foreach work -> gather, other} -> join -> end."""

from flowkernel import FlowSpec, step


class ForeachInBranchFlow(FlowSpec):
    @step
    def start(self):
        self.nums = [3, 1, 2]
        self.next(self.fan, self.other)

    @step
    def fan(self):
        self.next(self.work, foreach="nums")

    @step
    def work(self):
        self.sq = self.input**2
        self.next(self.gather)

    @step
    def gather(self, inputs):
        self.squares = [inp.sq for inp in inputs]
        self.next(self.join)

    @step
    def other(self):
        self.tag_value = "other:" + ",".join(map(str, self.nums))
        self.next(self.join)

    @step
    def join(self, inputs):
        self.squares = inputs.gather.squares
        self.tag_value = inputs.other.tag_value
        self.next(self.end)

    @step
    def end(self):
        self.total = sum(self.squares)


if __name__ == "__main__":
    ForeachInBranchFlow()
