"""@parallel: one step run as a gang of N cooperating processes (the shape of distributed
training). Every node knows its index and the gang's size; the join sees nodes in order."""

from flowkernel import FlowSpec, current, parallel, step


class GangFlow(FlowSpec):
    @step
    def start(self):
        self.shards = [list(range(i, 100, 4)) for i in range(4)]
        self.next(self.train, num_parallel=4)

    @parallel
    @step
    def train(self):
        node = current.parallel.node_index
        self.partial_sum = sum(self.shards[node])
        print(f"node {node}/{current.parallel.num_nodes} summed its shard: {self.partial_sum}")
        self.next(self.reduce)

    @step
    def reduce(self, inputs):
        self.total = sum(inp.partial_sum for inp in inputs)
        self.next(self.end)

    @step
    def end(self):
        print("total:", self.total)


if __name__ == "__main__":
    GangFlow()
