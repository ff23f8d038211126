from flowkernel import FlowSpec, Parameter, step


class BadParametersFlow(FlowSpec):
    tags = Parameter("tags", default="x")  # expect: bad-parameter
    alpha = Parameter("alpha", default=1)
    alpha_again = Parameter("alpha", default=2)  # expect: bad-parameter

    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass
