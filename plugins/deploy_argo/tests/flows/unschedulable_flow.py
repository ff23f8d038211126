from flowkernel import FlowSpec, Parameter, schedule, step


@schedule(daily=True)
class UnschedulableFlow(FlowSpec):
    needed = Parameter("needed", type=str, required=True)

    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass
