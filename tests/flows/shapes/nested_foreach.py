"""A foreach inside a foreach: every pair of letter and number."""

from flowkernel import FlowSpec, step


class NestedForeachFlow(FlowSpec):
    @step
    def start(self):
        self.letters = ["a", "b"]
        self.next(self.per_letter, foreach="letters")

    @step
    def per_letter(self):
        self.letter = self.input
        self.numbers = [1, 2, 3]
        self.next(self.per_number, foreach="numbers")

    @step
    def per_number(self):
        self.pair = f"{self.letter}{self.input}"
        self.next(self.join_numbers)

    @step
    def join_numbers(self, inputs):
        self.pairs = [inp.pair for inp in inputs]
        self.next(self.join_letters)

    @step
    def join_letters(self, inputs):
        self.pairs = [pair for inp in inputs for pair in inp.pairs]
        self.next(self.end)

    @step
    def end(self):
        assert self.pairs == ["a1", "a2", "a3", "b1", "b2", "b3"]
        print(self.pairs)


if __name__ == "__main__":
    NestedForeachFlow()
