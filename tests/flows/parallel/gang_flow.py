"""A 4-node gang step: every node writes an artifact; the join checks node order."""

import os
import time

from flowkernel import FlowSpec, current, parallel, retry, step


class GangFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.train, num_parallel=4)

    @retry(times=1)
    @parallel
    @step
    def train(self):
        info = current.parallel
        self.node = info.node_index
        self.num_nodes = info.num_nodes
        self.control = info.control_task_id
        self.flags = (current.is_parallel, self.input == self.node)
        self.attempt = current.retry_count
        print(f"node {self.node} of {self.num_nodes} pid {os.getpid()}", flush=True)
        fail = os.environ.get("GANG_FAIL")  # "once" or "always": node 2 fails, others wait
        if fail and (fail == "always" or current.retry_count == 0):
            if self.node == 2:
                time.sleep(0.5)
                raise RuntimeError("node 2 lost its GPU")
            time.sleep(60)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.nodes = [inp.node for inp in inputs]
        self.controls = {inp.control for inp in inputs}
        self.attempts = [inp.attempt for inp in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    GangFlow()
