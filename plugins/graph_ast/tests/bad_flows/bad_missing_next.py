from flowkernel import FlowSpec, step


class MissingNextFlow(FlowSpec):
    @step
    def start(self):
        self.x = 1
        self.next(self.middle)

    @step
    def middle(self):  # expect: missing-next
        self.x += 1

    @step
    def nested(self):  # expect: missing-next
        if self.x:
            self.next(self.end)

    @step
    def end(self):
        pass
