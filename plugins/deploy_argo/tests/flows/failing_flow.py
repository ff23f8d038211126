from flowkernel import FlowSpec, step


class FailingFlow(FlowSpec):
    @step
    def start(self):
        self.items = [1, 2, 3]
        self.next(self.work, foreach="items")

    @step
    def work(self):
        if self.input == 2:
            raise ValueError("item 2 is bad")
        self.out = self.input
        self.next(self.join)

    @step
    def join(self, inputs):
        self.next(self.end)

    @step
    def end(self):
        pass
