from flowkernel import FlowSpec, step


class ShadowFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.merge_artifacts)

    @step
    def merge_artifacts(self):  # expect: step-shadows-flowspec
        self.next(self.end)

    @step
    def end(self):
        pass
