"""A foreach over an UnboundedForeachInput: a control task decides the width, mappers do the work.

``--sized`` uses an input whose ``len()`` works only in the control task (it checks that it is
asked there); otherwise the width is where indexing stops. ``--fail-at i`` fails mapper i in a
fresh run (not in a resume of it).
"""

from flowkernel import FlowSpec, Parameter, current, step
from flowkernel.unbounded_foreach import UnboundedForeachInput


class Shards(UnboundedForeachInput):
    """Only indexing: the width is where indexing stops."""

    def __init__(self, count):
        self.count = count

    def __getitem__(self, index):
        if index >= self.count:
            raise IndexError(index)
        return f"shard-{index}"


class AskedInControl(Shards):
    def __len__(self):
        if current.step_name != "work":
            raise RuntimeError(f"the width was asked in step {current.step_name}")
        return self.count


class UnboundedFlow(FlowSpec):
    count = Parameter("count", default=3)
    sized = Parameter("sized", default=False)
    fail_at = Parameter("fail-at", default=-1)

    @step
    def start(self):
        self.shards = (AskedInControl if self.sized else Shards)(self.count)
        self.next(self.work, foreach="shards")

    @step
    def work(self):
        if self.index == self.fail_at and current.origin_run_id is None:
            raise ValueError(f"mapper {self.index} fails")
        self.done = (self.index, self.input)
        self.frame = self.foreach_stack()[-1][:2]
        self.next(self.join)

    @step
    def join(self, inputs):
        self.results = [i.done for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    UnboundedFlow()
