"""start writes one large bytes artifact; the next step reads it and checks its length."""

from flowkernel import FlowSpec, Parameter, step


class BigArtifactFlow(FlowSpec):
    size_mb = Parameter("size_mb", default=200, type=int, help="Artifact size in MB.")

    @step
    def start(self):
        self.blob = b"\x01" * (self.size_mb * 1_000_000)
        self.next(self.check)

    @step
    def check(self):
        assert len(self.blob) == self.size_mb * 1_000_000
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    BigArtifactFlow()
