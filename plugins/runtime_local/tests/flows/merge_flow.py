"""Every merge_artifacts rule, exercised in three joins; outcomes are stored as artifacts.

start -> {a, b} -> join_all (conflicts, include+exclude, missing include, exclude, pre-set)
      -> fan_cd -> {c, d} -> join_include (include merges only the listed names)
      -> fan_items -> foreach [0, 1, 2] item
      -> join_foreach (a name set in one branch only is merged) -> end
"""

from flowkernel import FlowSpec, step
from flowkernel.errors import (
    MergeArtifactsError,
    MissingInMergeArtifactsError,
    UnhandledInMergeArtifactsError,
)


class MergeFlow(FlowSpec):
    CONST = "constant"

    @step
    def start(self):
        self.common = "same in both"
        self.next(self.a, self.b)

    @step
    def a(self):
        try:
            self.merge_artifacts([])
        except MergeArtifactsError as exc:
            self.not_a_join = (type(exc).__name__, str(exc))
        self.same = [1, 2]
        self.conflict = "from a"
        self.num = 1
        self.pre = "a"
        self.excluded = "a"
        self.only_a = "A"
        self._private = "underscore"
        self.next(self.join_all)

    @step
    def b(self):
        self.same = [1, 2]
        self.conflict = "from b"
        self.num = 1.0
        self.pre = "b"
        self.excluded = "b"
        self.only_b = "B"
        self.next(self.join_all)

    @step
    def join_all(self, inputs):
        names = ("same", "only_a", "only_b", "common", "_private")
        try:
            self.merge_artifacts(inputs)
        except UnhandledInMergeArtifactsError as exc:
            self.conflicts = sorted(set(exc.artifact_names))
            self.after_conflict = [n for n in names if hasattr(self, n)]
        try:
            self.merge_artifacts(inputs, include=["same"], exclude=["conflict"])
        except MergeArtifactsError as exc:
            self.both_error = type(exc).__name__
        try:
            self.merge_artifacts(inputs, include=["only_a", "not_anywhere"])
        except MissingInMergeArtifactsError as exc:
            self.missing = exc.artifact_names
            self.after_missing = [n for n in names if hasattr(self, n)]
        self.pre = "set in join"
        self.conflict = "resolved"
        self.num = 2
        self.merge_artifacts(inputs, exclude=["excluded"])
        self.excluded_present = hasattr(self, "excluded")
        self.merged_same = self.same
        self.next(self.fan_cd)

    @step
    def fan_cd(self):
        self.next(self.c, self.d)

    @step
    def c(self):
        self.p = "p"
        self.q = "q from c"
        self.r = "r"
        self.next(self.join_include)

    @step
    def d(self):
        self.p = "p"
        self.q = "q from d"
        self.next(self.join_include)

    @step
    def join_include(self, inputs):
        self.merge_artifacts(inputs, include=["p", "r"])
        self.has = {n: hasattr(self, n) for n in ("p", "q", "r", "pre", "only_a")}
        self.next(self.fan_items)

    @step
    def fan_items(self):
        self.items = [0, 1, 2]
        self.next(self.item, foreach="items")

    @step
    def item(self):
        self.shared = "every branch"
        if self.input == 1:
            self.only_in_one = "branch 1"
        self.next(self.join_foreach)

    @step
    def join_foreach(self, inputs):
        self.merge_artifacts(inputs)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    MergeFlow()
