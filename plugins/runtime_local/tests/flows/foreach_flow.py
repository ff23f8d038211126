"""A foreach over 35 non-monotonic values.

index/input are constant inside the foreach; the join sees its inputs in split order.
"""

from flowkernel import FlowSpec, step

VALUES = [(i * 17) % 35 for i in range(35)]  # 0, 17, 34, 16, 33, ... (a permutation of 0..34)


class ForeachFlow(FlowSpec):
    @step
    def start(self):
        self.arr = VALUES
        self.start_index = self.index
        self.start_input = self.input
        self.next(self.inner_first, foreach="arr")

    @step
    def inner_first(self):
        self.first_index = self.index
        self.first_input = self.input
        self.first_stack = self.foreach_stack()
        self.assign_errors = []
        for name in ("index", "input"):
            try:
                setattr(self, name, 99)
            except AttributeError:
                self.assign_errors.append(name)
        self.next(self.inner_second)

    @step
    def inner_second(self):
        self.second_index = self.index
        self.second_input = self.input
        self.square = self.input * self.input
        self.next(self.join)

    @step
    def join(self, inputs):
        self.inputs_seen = [inp.second_input for inp in inputs]
        self.indices_seen = [inp.index for inp in inputs]
        self.input_props = [inp.input for inp in inputs]
        self.squares = [inp.square for inp in inputs]
        self.last_by_name = inputs.inner_second.second_index
        self.join_index = self.index
        self.join_input = self.input
        self.next(self.end)

    @step
    def end(self):
        self.total = sum(self.squares)


if __name__ == "__main__":
    ForeachFlow()
