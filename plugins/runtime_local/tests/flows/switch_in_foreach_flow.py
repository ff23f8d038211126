"""foreach items -> process_item switch {handle_even, handle_odd} -> foreach join -> end."""

from flowkernel import FlowSpec, step


class SwitchInForeachFlow(FlowSpec):
    @step
    def start(self):
        self.items = [4, 7, 2, 9, 6, 1]
        self.next(self.process_item, foreach="items")

    @step
    def process_item(self):
        self.item = self.input
        self.kind = "even" if self.item % 2 == 0 else "odd"
        self.next({"even": self.handle_even, "odd": self.handle_odd}, condition="kind")

    @step
    def handle_even(self):
        self.out = f"even:{self.item}"
        self.seen = (self.index, self.input)
        self.next(self.join)

    @step
    def handle_odd(self):
        self.out = f"odd:{self.item}"
        self.seen = (self.index, self.input)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.outs = [inp.out for inp in inputs]
        self.order = [(inp.seen[0], inp.out.split(":")[0]) for inp in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    SwitchInForeachFlow()
