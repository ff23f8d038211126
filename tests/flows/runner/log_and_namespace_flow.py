"""Prints ``lines`` lines of 1000 bytes and records the namespace the client sees in a step."""

from flowkernel import FlowSpec, Parameter, get_namespace, step


class LogAndNamespaceFlow(FlowSpec):
    lines = Parameter("lines", default=0)

    @step
    def start(self):
        self.seen_namespace = get_namespace()
        for i in range(self.lines):
            print(f"{i:05d}" + "x" * 994)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    LogAndNamespaceFlow()
