"""Every step but start checks, before anything else, that the records of the tasks it reads
were fsync'd (file and directories: the task's, and the step's and the run's that hold the new
task and step directories; the file alone on ext4, whose fsync of a new file makes its name
and its new parents' durable too: see ``flowkernel_runtime_local.commit``): ``FK_FSYNC_LOG``
lists every fsync (``pid path`` lines, written by a spy the test installs with a
sitecustomize)."""

import os

from flowkernel import FlowSpec, current, step
from flowkernel_runtime_local.commit import dir_fsync_needed


def assert_durable(*pathspecs):
    with open(os.environ["FK_FSYNC_LOG"]) as fh:
        synced = {line.split(" ", 1)[1] for line in fh.read().splitlines()}
    for pathspec in pathspecs:
        folder = os.path.realpath(os.path.join(current.datastore_root, pathspec))
        record = os.path.join(folder, "0.record.json")
        assert record in synced, f"{record} was not made durable"
        if dir_fsync_needed(os.stat(record).st_dev):
            step = os.path.dirname(folder)
            for directory in (folder, step, os.path.dirname(step)):
                assert directory in synced, f"{directory} was not made durable"


class DurableFlow(FlowSpec):
    @step
    def start(self):
        self.me = current.pathspec
        self.items = list(range(4))
        self.next(self.body, foreach="items")

    @step
    def body(self):
        assert_durable(self.me)
        self.me = current.pathspec
        self.next(self.join)

    @step
    def join(self, inputs):
        assert_durable(*(i.me for i in inputs))
        self.me = current.pathspec
        self.next(self.end)

    @step
    def end(self):
        assert_durable(self.me)
        self.me = current.pathspec


if __name__ == "__main__":
    DurableFlow()
