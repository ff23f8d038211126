"""foreach x='abc' -> foreach y='de' -> foreach z='fghijk' -> inner: 36 inner tasks."""

from flowkernel import FlowSpec, step


class NestedForeachFlow(FlowSpec):
    @step
    def start(self):
        self.x = "abc"
        self.next(self.foreach_x, foreach="x")

    @step
    def foreach_x(self):
        self.y = "de"
        self.next(self.foreach_y, foreach="y")

    @step
    def foreach_y(self):
        self.z = "fghijk"
        self.next(self.inner, foreach="z")

    @step
    def inner(self):
        self.stack = self.foreach_stack()
        self.combo = "".join(value for _, _, value in self.stack)
        self.next(self.join_z)

    @step
    def join_z(self, inputs):
        self.combos = [inp.combo for inp in inputs]
        self.join_stack = self.foreach_stack()
        self.join_index = self.index
        self.join_input = self.input
        self.next(self.join_y)

    @step
    def join_y(self, inputs):
        self.combos = [c for inp in inputs for c in inp.combos]
        self.next(self.join_x)

    @step
    def join_x(self, inputs):
        self.combos = [c for inp in inputs for c in inp.combos]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    NestedForeachFlow()
