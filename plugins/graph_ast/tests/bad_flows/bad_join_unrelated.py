from flowkernel import FlowSpec, step


class JoinUnrelatedFlow(FlowSpec):
    @step
    def start(self):
        self.items = [1, 2]
        self.next(self.fan, self.other)

    @step
    def fan(self):
        self.next(self.item, foreach="items")

    @step
    def item(self):
        self.next(self.join)

    @step
    def other(self):
        self.next(self.join)

    @step
    def join(self, inputs):  # expect: join-unrelated-splits
        self.next(self.end)

    @step
    def end(self):
        pass
