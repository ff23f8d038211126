"""Static branches that run side by side, joined with merge_artifacts."""

from flowkernel import FlowSpec, step


class BranchFlow(FlowSpec):
    """Train two toy 'models' on the same data and keep the better one."""

    @step
    def start(self):
        self.data = [3, 1, 4, 1, 5, 9, 2, 6]
        self.next(self.mean_model, self.median_model)

    @step
    def mean_model(self):
        self.mean = sum(self.data) / len(self.data)
        self.next(self.choose)

    @step
    def median_model(self):
        ordered = sorted(self.data)
        mid = len(ordered) // 2
        self.median = (ordered[mid - 1] + ordered[mid]) / 2
        self.next(self.choose)

    @step
    def choose(self, inputs):
        # `data` is the same in both branches, `mean` and `median` exist in one each:
        # merge_artifacts brings all three over without conflicts.
        self.merge_artifacts(inputs)
        self.best = min(self.mean, self.median)
        self.next(self.end)

    @step
    def end(self):
        print(f"mean={self.mean} median={self.median} best={self.best}")


if __name__ == "__main__":
    BranchFlow()
