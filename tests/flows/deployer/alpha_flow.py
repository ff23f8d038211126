from flowkernel import FlowSpec, Parameter, step


class AlphaFlow(FlowSpec):
    alpha = Parameter("alpha", default=1, help="How many squares.")
    label = Parameter("label", default="plain")

    @step
    def start(self):
        self.items = list(range(self.alpha))
        self.next(self.square, foreach="items")

    @step
    def square(self):
        self.result = self.input**2
        self.next(self.join)

    @step
    def join(self, inputs):
        self.squares = [i.result for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        self.total = sum(self.squares)
        print("total", self.total, self.label)


if __name__ == "__main__":
    AlphaFlow()
