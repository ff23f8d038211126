"""Artifacts read back (verified), foreach shapes the engine must refuse, huge foreaches."""

import itertools
import os
import time

from robust_flowlib import mark

from flowkernel import FlowSpec, Parameter, step


class IntegrityFlow(FlowSpec):
    payload = Parameter("payload", default="hello")
    #: list (fine), dict, huge_range, endless
    shape = Parameter("shape", default="list")
    hold = Parameter("hold", default=False, help="body waits for the test's `release` marker")
    #: a large blob goes through the chunked write and the read hashed on a second thread
    blob_mb = Parameter("blob_mb", default=0, type=int)

    @step
    def start(self):
        blob = b"x" * (self.blob_mb * 1_000_000 + 1000)
        self.value = {"payload": self.payload, "blob": blob}
        if self.shape == "dict":
            self.items = {"a": 1, "b": 2}
        elif self.shape == "huge_range":
            self.items = range(10**12)
        elif self.shape == "endless":
            self.items = itertools.count()
        else:
            self.items = [1, 2]
        self.next(self.body, foreach="items")

    @step
    def body(self):
        mark("body")
        while self.hold and not os.path.exists(
            os.path.join(os.environ["ROBUST_MARKERS"], "release")
        ):
            time.sleep(0.02)
        self.seen = self.input
        self.next(self.join)

    @step
    def join(self, inputs):
        self.seen = sorted(i.seen for i in inputs)
        self.merge_artifacts(inputs)
        self.next(self.end)

    @step
    def end(self):
        print("payload", self.value["payload"], "seen", self.seen)


if __name__ == "__main__":
    IntegrityFlow()
