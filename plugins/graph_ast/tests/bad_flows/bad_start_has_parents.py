from flowkernel import FlowSpec, step


class StartHasParentsFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.end)

    @step
    def orphan(self):  # expect: unreachable-step
        self.next(self.start)  # expect: start-has-parents

    @step
    def end(self):
        pass
