"""A switch whose branches hold a static split and a foreach, inside a static split."""

from flowkernel import FlowSpec, Parameter, step


class SwitchShapesFlow(FlowSpec):
    route = Parameter("route", default="fan")

    @step
    def start(self):
        self.next(self.left, self.right)

    @step
    def left(self):
        self.next({"fan": self.fan, "pair": self.pair, "skip": self.skip}, condition="route")

    @step
    def fan(self):
        self.items = [3, 1, 2]
        self.next(self.square, foreach="items")

    @step
    def square(self):
        self.value = self.input * self.input
        self.next(self.fan_join)

    @step
    def fan_join(self, inputs):
        self.result = [i.value for i in inputs]
        self.next(self.left_done)

    @step
    def pair(self):
        self.next(self.p1, self.p2)

    @step
    def p1(self):
        self.part = "p1"
        self.next(self.pair_join)

    @step
    def p2(self):
        self.part = "p2"
        self.next(self.pair_join)

    @step
    def pair_join(self, inputs):
        self.result = sorted(i.part for i in inputs)
        self.next(self.left_done)

    @step
    def skip(self):
        self.result = "skipped"
        self.next(self.left_done)

    @step
    def left_done(self):
        self.next(self.join)

    @step
    def right(self):
        self.other = "right"
        self.next(self.join)

    @step
    def join(self, inputs):
        self.results = sorted(str(getattr(i, "result", None)) for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        pass
