"""``self.input`` of every kind, in every foreach shape a forked task meets.

A foreach over 77 plain items of mixed kinds (chunked: more than 64), one over 70 values that
are not plain (not chunked: the list is read whole), and a nested foreach whose inner level is
chunked. ``INPUT_KINDS_FAIL_AT=N`` in the environment: the body task of index N fails (for
resume).
"""

import os

from flowkernel import FlowSpec, Parameter, current, step

FIELDS = (
    "flow_name", "run_id", "step_name", "task_id", "retry_count", "origin_run_id", "namespace",
    "username", "tags", "parameter_names", "datastore_root", "parallel", "is_parallel",
    "project_name", "branch_name", "is_user_branch", "is_production", "project_flow_name",
    "pathspec", "is_running_flow",
)  # fmt: skip

PLAIN = [None, True, 0, -1, 2**70, 1.5, "s", "", b"b", (1, "x", None), complex(1, 2)] * 7
BIG = [{"k": i, "v": list(range(i))} for i in range(70)]


class InputKindsFlow(FlowSpec):
    label = Parameter("label", default="kinds")

    @step
    def start(self):
        self.items = PLAIN
        self.next(self.body, foreach="items")

    @step
    def body(self):
        if str(self.index) == os.environ.get("INPUT_KINDS_FAIL_AT"):
            raise RuntimeError("asked to fail")
        self.got = self.input
        self.where = (current.step_name, current.task_id, current.retry_count, self.index)
        if self.index in (0, 70):  # the others never read the rest of `current`
            self.cur = {name: getattr(current, name) for name in FIELDS}
            self.cur["graph_steps"] = sorted(current.graph["steps"])
            self.cur["get"] = (current.get("step_name"), "task_id" in current, "nope" in current)
        self.next(self.join1)

    @step
    def join1(self, inputs):
        self.seen = [(i.index, i.got, i.where[0], i.where[2]) for i in inputs]
        self.next(self.split_big)

    @step
    def split_big(self):
        self.bigs = BIG
        self.next(self.big, foreach="bigs")

    @step
    def big(self):
        self.got_big = self.input
        self.next(self.join2)

    @step
    def join2(self, inputs):
        self.seen_big = [(i.index, i.got_big) for i in inputs]
        self.next(self.split_outer)

    @step
    def split_outer(self):
        self.outer = ["a", "b"]
        self.next(self.outer_step, foreach="outer")

    @step
    def outer_step(self):
        self.inner = [(self.input, j) for j in range(66)]
        self.next(self.inner_step, foreach="inner")

    @step
    def inner_step(self):
        self.got_inner = (self.input, self.foreach_stack())
        self.next(self.join3)

    @step
    def join3(self, inputs):
        self.seen_inner = [i.got_inner for i in inputs]
        self.next(self.join4)

    @step
    def join4(self, inputs):
        self.seen_nested = [row for i in inputs for row in i.seen_inner]
        self.next(self.end)

    @step
    def end(self):
        pass
