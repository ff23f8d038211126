from flowkernel import FlowSpec, step


class SwitchNoCasesFlow(FlowSpec):
    @step
    def start(self):
        self.choice = "a"
        self.next({}, condition="choice")  # expect: bad-switch

    @step
    def end(self):  # expect: unreachable-step
        pass
