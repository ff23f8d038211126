"""An unbounded foreach inside an ordinary one: one control task per outer element."""

from flowkernel import FlowSpec, step
from flowkernel.unbounded_foreach import UnboundedForeachInput


class Letters(UnboundedForeachInput):
    def __init__(self, text):
        self.text = text

    def __len__(self):
        return len(self.text)

    def __getitem__(self, index):
        return self.text[index]


class UnboundedNestedFlow(FlowSpec):
    @step
    def start(self):
        self.words = ["ab", "cde"]
        self.next(self.outer, foreach="words")

    @step
    def outer(self):
        self.letters = Letters(self.input)
        self.next(self.inner, foreach="letters")

    @step
    def inner(self):
        self.letter = self.input.upper()
        self.next(self.inner_join)

    @step
    def inner_join(self, inputs):
        self.word = "".join(i.letter for i in inputs)
        self.next(self.outer_join)

    @step
    def outer_join(self, inputs):
        self.words_out = [i.word for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    UnboundedNestedFlow()
