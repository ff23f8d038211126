from flowkernel import FlowSpec, step


class JoinWithoutSplitFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.gather)

    @step
    def gather(self, inputs):  # expect: join-without-split
        self.next(self.end)

    @step
    def end(self):
        pass
