"""Every graph shape in one small flow: branch + join, nested foreach, a recursive switch, a
switch, parameters, and output on both streams."""

import sys

from flowkernel import FlowSpec, Parameter, step


class DaskShapesFlow(FlowSpec):
    n = Parameter("n", default=2, type=int)
    label = Parameter("label", default="plain")

    @step
    def start(self):
        self.items = list(range(self.n))
        print(f"start says {self.label}")
        print("a line on stderr", file=sys.stderr)
        self.next(self.left, self.right)

    @step
    def left(self):
        self.side = "L"
        self.next(self.join_sides)

    @step
    def right(self):
        self.side = "R"
        self.next(self.join_sides)

    @step
    def join_sides(self, inputs):
        self.sides = [inp.side for inp in inputs]
        self.merge_artifacts(inputs, exclude=["side"])
        self.next(self.fan_out)

    @step
    def fan_out(self):
        self.next(self.outer, foreach="items")

    @step
    def outer(self):
        self.o = self.input
        self.inner_items = ["a", "b"]
        self.next(self.inner, foreach="inner_items")

    @step
    def inner(self):
        self.pair = f"{self.o}{self.input}"
        print(f"inner {self.pair}")
        self.next(self.join_inner)

    @step
    def join_inner(self, inputs):
        self.pairs = [inp.pair for inp in inputs]
        self.sides = inputs[0].sides
        self.next(self.join_outer)

    @step
    def join_outer(self, inputs):
        self.all_pairs = [p for inp in inputs for p in inp.pairs]
        self.sides = inputs[0].sides
        self.count = 0
        self.next(self.loop)

    @step
    def loop(self):
        self.count += 1
        self.again = "yes" if self.count < 3 else "no"
        self.next({"yes": self.loop, "no": self.pick}, condition="again")

    @step
    def pick(self):
        self.route = "even" if self.n % 2 == 0 else "odd"
        self.next({"even": self.even, "odd": self.odd}, condition="route")

    @step
    def even(self):
        self.parity = "even"
        self.next(self.end)

    @step
    def odd(self):
        self.parity = "odd"
        self.next(self.end)

    @step
    def end(self):
        self.summary = (self.label, self.sides, self.all_pairs, self.count, self.parity)


if __name__ == "__main__":
    DaskShapesFlow()
