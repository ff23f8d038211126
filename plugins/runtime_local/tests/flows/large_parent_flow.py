"""A foreach whose parent record is too large to travel in a launch request: 900 artifacts
(their hashes, and their pickles inline). Its body tasks read their input records from the
datastore and still get their items and the parent's artifacts."""

from flowkernel import FlowSpec, step


class LargeParentFlow(FlowSpec):
    @step
    def start(self):
        for i in range(900):
            setattr(self, f"a{i}", i)
        self.items = [f"item{i}" for i in range(70)]
        self.next(self.body, foreach="items")

    @step
    def body(self):
        self.got = (self.input, self.a899 + self.index)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.seen = [i.got for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass
