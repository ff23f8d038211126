from flowkernel import FlowSpec, step


class ForeachNeverJoinedFlow(FlowSpec):
    @step
    def start(self):
        self.items = [1, 2]
        self.next(self.each, foreach="items")  # expect: unjoined-split

    @step
    def each(self):
        self.next(self.end)

    @step
    def end(self):
        pass
