"""foreach items -> start_loop_for_item -> loop_body (recursive switch) -> exit_item_loop.

Each item loops its own number of times; a foreach join collects them.
"""

from flowkernel import FlowSpec, step


class RecursiveSwitchInsideForeachFlow(FlowSpec):
    @step
    def start(self):
        self.items = [{"id": "a", "n": 3}, {"id": "b", "n": 5}, {"id": "c", "n": 2}]
        self.next(self.start_loop_for_item, foreach="items")

    @step
    def start_loop_for_item(self):
        self.item_id = self.input["id"]
        self.target = self.input["n"]
        self.count = 0
        self.next(self.loop_body)

    @step
    def loop_body(self):
        self.count += 1
        self.more = str(self.count < self.target)
        self.next({"True": self.loop_body, "False": self.exit_item_loop}, condition="more")

    @step
    def exit_item_loop(self):
        self.result = (self.item_id, self.count)
        self.after_loop = (self.index, self.input["id"])
        self.next(self.join)

    @step
    def join(self, inputs):
        self.in_order = [inp.result for inp in inputs]
        self.results = sorted(self.in_order)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    RecursiveSwitchInsideForeachFlow()
