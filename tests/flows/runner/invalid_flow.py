from flowkernel import FlowSpec, step


class InvalidFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.missing)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    InvalidFlow()
