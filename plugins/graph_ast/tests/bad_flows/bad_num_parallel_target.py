from flowkernel import FlowSpec, step


class NumParallelTargetFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.train, num_parallel=2)  # expect: num-parallel-needs-parallel

    @step
    def train(self):
        self.next(self.join)

    @step
    def join(self, inputs):
        self.next(self.end)

    @step
    def end(self):
        pass
