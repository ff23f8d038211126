from flowkernel import FlowSpec, step


class EndHasNextFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        self.next(self.epilogue)  # expect: end-has-next

    @step
    def epilogue(self):  # expect: missing-next
        pass
