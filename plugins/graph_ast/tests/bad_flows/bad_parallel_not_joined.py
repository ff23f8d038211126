from flowkernel import FlowSpec, parallel, step


class ParallelNotJoinedFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.train, num_parallel=2)  # expect: unjoined-split

    @parallel
    @step
    def train(self):
        self.next(self.after)  # expect: parallel-needs-join

    @step
    def after(self):
        self.next(self.end)

    @step
    def end(self):
        pass
