from flowkernel import FlowSpec, step


class BrokenFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.nowhere)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    BrokenFlow()
