"""Task failures a user makes: an artifact that cannot be pickled, a foreach over nothing.

``--fail unpicklable`` or ``--fail empty`` picks which; the default succeeds.
"""

import threading

from flowkernel import FlowSpec, Parameter, step


class FailuresFlow(FlowSpec):
    fail = Parameter("fail", default="none")

    @step
    def start(self):
        self.before = "kept"
        if self.fail == "unpicklable":
            self.lock = threading.Lock()
        self.items = [] if self.fail == "empty" else ["a", "b"]
        self.next(self.each, foreach="items")

    @step
    def each(self):
        self.first = self.input
        self.items = ["x", "y"]  # overwrites the foreach variable: later steps see new input
        self.next(self.after)

    @step
    def after(self):
        self.second = self.input
        self.next(self.join)

    @step
    def join(self, inputs):
        self.pairs = [(inp.first, inp.second) for inp in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    FailuresFlow()
