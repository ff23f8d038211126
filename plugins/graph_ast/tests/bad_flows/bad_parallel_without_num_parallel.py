from flowkernel import FlowSpec, parallel, step


class ParallelWithoutNumParallelFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.train)  # expect: parallel-without-num-parallel

    @parallel
    @step
    def train(self):
        self.next(self.join)

    @step
    def join(self, inputs):  # expect: join-without-split
        self.next(self.end)

    @step
    def end(self):
        pass
