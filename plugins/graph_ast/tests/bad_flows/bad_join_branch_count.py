from flowkernel import FlowSpec, step


class JoinBranchCountFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.a, self.b, self.c)

    @step
    def a(self):
        self.next(self.join_ab)

    @step
    def b(self):
        self.next(self.join_ab)

    @step
    def c(self):
        self.next(self.join_c)

    @step
    def join_ab(self, inputs):  # expect: join-branch-count
        self.next(self.end)

    @step
    def join_c(self, inputs):  # expect: join-branch-count
        self.next(self.end)

    @step
    def end(self):
        pass
