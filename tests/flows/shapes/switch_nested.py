"""A switch whose branch holds another switch; all paths meet at one step."""

from flowkernel import FlowSpec, step


class SwitchNestedFlow(FlowSpec):
    @step
    def start(self):
        self.kind = "animal"
        self.sound = "bark"
        self.next({"animal": self.animal, "plant": self.plant}, condition="kind")

    @step
    def animal(self):
        self.next({"bark": self.dog, "meow": self.cat}, condition="sound")

    @step
    def dog(self):
        self.answer = "dog"
        self.next(self.report)

    @step
    def cat(self):
        self.answer = "cat"
        self.next(self.report)

    @step
    def plant(self):
        self.answer = "plant"
        self.next(self.report)

    @step
    def report(self):
        print("it is a", self.answer)
        self.next(self.end)

    @step
    def end(self):
        assert self.answer == "dog"


if __name__ == "__main__":
    SwitchNestedFlow()
