from flowkernel import FlowSpec, step


class NoEndFlow(FlowSpec):  # expect: no-end-step
    @step
    def start(self):
        self.next(self.finish)

    @step
    def finish(self):  # expect: missing-next
        print("done")
