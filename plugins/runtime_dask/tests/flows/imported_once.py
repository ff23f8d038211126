"""Each import of this file appends the importing process's pid to ``FLOWKERNEL_TEST_IMPORTS``;
a config is read while the class body runs; the foreach tasks record their own pids."""

import os

from flowkernel import Config, FlowSpec, step

with open(os.environ["FLOWKERNEL_TEST_IMPORTS"], "a") as log:
    log.write(f"{os.getpid()}\n")


class DaskImportedOnceFlow(FlowSpec):
    cfg = Config("cfg", default_value={"label": "default"})
    label_at_import = cfg.label

    @step
    def start(self):
        self.items = list(range(4))
        self.next(self.work, foreach="items")

    @step
    def work(self):
        self.pid = os.getpid()
        self.label = self.label_at_import
        self.next(self.join)

    @step
    def join(self, inputs):
        self.pids = [i.pid for i in inputs]
        self.labels = [i.label for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    DaskImportedOnceFlow()
