"""A step whose input record is large (thousands of artifacts): more than one message to the
fork server may carry."""

from flowkernel import FlowSpec, step

#: artifacts of the start step: ~350 KB of record
WIDTH = 3000


class BigRecordFlow(FlowSpec):
    @step
    def start(self):
        for i in range(WIDTH):
            setattr(self, f"artifact_number_{i:05d}", "same")  # one blob, stored once
        self.next(self.end)

    @step
    def end(self):
        self.last = getattr(self, f"artifact_number_{WIDTH - 1:05d}")
        print(WIDTH, "artifacts, the last:", self.last)


if __name__ == "__main__":
    BigRecordFlow()
