from flowkernel import FlowSpec, JSONType, Parameter, step


class ParamsFlow(FlowSpec):
    alpha = Parameter("alpha", default=1)
    ratio = Parameter("ratio", default=0.5)
    label = Parameter("label", default="x")
    flag = Parameter("flag", default=False)
    options = Parameter("options", type=JSONType, default='{"k": 1}')
    words = Parameter("words", default="a,b", separator=",")

    @step
    def start(self):
        self.doubled = self.alpha * 2
        print("alpha is", self.alpha)
        self.next(self.end)

    @step
    def end(self):
        self.summary = (self.alpha, self.ratio, self.label, self.flag, self.options, self.words)


if __name__ == "__main__":
    ParamsFlow()
