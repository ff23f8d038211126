"""A @parallel gang whose size is a parameter; each node reports the process it ran under."""

import os

from flowkernel import FlowSpec, Parameter, current, parallel, step


class DaskGangFlow(FlowSpec):
    nodes = Parameter("nodes", default=2, type=int)

    @step
    def start(self):
        self.next(self.train, num_parallel=self.nodes)

    @parallel
    @step
    def train(self):
        self.node = current.parallel.node_index
        self.num_nodes = current.parallel.num_nodes
        self.control = current.parallel.control_task_id
        self.worker_pid = os.getppid()
        print(f"node {self.node} of {self.num_nodes}")
        self.next(self.join)

    @step
    def join(self, inputs):
        self.nodes_seen = [(inp.node, inp.num_nodes) for inp in inputs]
        self.workers = sorted({inp.worker_pid for inp in inputs})
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    DaskGangFlow()
