from flowkernel import FlowSpec, step


class SeveralProblemsFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.Work)

    @step
    def Work(self):  # expect: invalid-step-name
        self.next(self.index)

    @step
    def index(self):  # expect: reserved-step-name
        self.next(self.finsh)  # expect: unknown-target

    @step
    def tidy(self):  # expect: missing-next
        print("tidy")

    @step
    def end(self):
        pass
