import os

from flowkernel import FlowSpec, step


class FailingFlow(FlowSpec):
    @step
    def start(self):
        self.before = "kept"
        self.next(self.boom)

    @step
    def boom(self):
        if not os.environ.get("FIXED"):
            raise KeyError("Something has gone wrong")
        self.fixed = True
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    FailingFlow()
