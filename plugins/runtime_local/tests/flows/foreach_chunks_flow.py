"""A foreach over 70 plain items: more than one chunk of 64 (self.input reads one chunk).

Task 3 reassigns the variable before reading self.input (it then indexes its own value); the
second step of the body reads self.input from the variable itself.
"""

from flowkernel import FlowSpec, step

ITEMS = [i if i % 3 else (f"s{i}", i * 0.5, None) for i in range(70)]


class ForeachChunksFlow(FlowSpec):
    @step
    def start(self):
        self.items = ITEMS
        self.next(self.body, foreach="items")

    @step
    def body(self):
        if self.index == 3:
            self.items = ["own"] * 70
        self.got = self.input
        self.same = self.input is self.input
        self.next(self.body2)

    @step
    def body2(self):
        self.again = self.input
        self.next(self.join)

    @step
    def join(self, inputs):
        self.seen = [(i.index, i.got, i.again, i.same) for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass
