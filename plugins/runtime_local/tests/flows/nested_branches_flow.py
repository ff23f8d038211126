"""Three levels of binary static splits (8 leaves) joined pairwise back up."""

from flowkernel import FlowSpec, step


class NestedBranchesFlow(FlowSpec):
    @step
    def start(self):
        self.path = ["start"]
        self.next(self.a, self.b)

    @step
    def a(self):
        self.path = [*self.path, "a"]
        self.next(self.aa, self.ab)

    @step
    def b(self):
        self.path = [*self.path, "b"]
        self.next(self.ba, self.bb)

    @step
    def aa(self):
        self.path = [*self.path, "aa"]
        self.next(self.aaa, self.aab)

    @step
    def ab(self):
        self.path = [*self.path, "ab"]
        self.next(self.aba, self.abb)

    @step
    def ba(self):
        self.path = [*self.path, "ba"]
        self.next(self.baa, self.bab)

    @step
    def bb(self):
        self.path = [*self.path, "bb"]
        self.next(self.bba, self.bbb)

    @step
    def aaa(self):
        self.leaves = [(tuple(self.path), "aaa")]
        self.next(self.join_aa)

    @step
    def aab(self):
        self.leaves = [(tuple(self.path), "aab")]
        self.next(self.join_aa)

    @step
    def aba(self):
        self.leaves = [(tuple(self.path), "aba")]
        self.next(self.join_ab)

    @step
    def abb(self):
        self.leaves = [(tuple(self.path), "abb")]
        self.next(self.join_ab)

    @step
    def baa(self):
        self.leaves = [(tuple(self.path), "baa")]
        self.next(self.join_ba)

    @step
    def bab(self):
        self.leaves = [(tuple(self.path), "bab")]
        self.next(self.join_ba)

    @step
    def bba(self):
        self.leaves = [(tuple(self.path), "bba")]
        self.next(self.join_bb)

    @step
    def bbb(self):
        self.leaves = [(tuple(self.path), "bbb")]
        self.next(self.join_bb)

    @step
    def join_aa(self, inputs):
        self.leaves = inputs.aaa.leaves + inputs.aab.leaves
        self.next(self.join_a)

    @step
    def join_ab(self, inputs):
        self.leaves = inputs.aba.leaves + inputs.abb.leaves
        self.next(self.join_a)

    @step
    def join_ba(self, inputs):
        self.leaves = inputs.baa.leaves + inputs.bab.leaves
        self.next(self.join_b)

    @step
    def join_bb(self, inputs):
        self.leaves = inputs.bba.leaves + inputs.bbb.leaves
        self.next(self.join_b)

    @step
    def join_a(self, inputs):
        self.leaves = inputs.join_aa.leaves + inputs.join_ab.leaves
        self.next(self.join)

    @step
    def join_b(self, inputs):
        self.leaves = inputs.join_ba.leaves + inputs.join_bb.leaves
        self.next(self.join)

    @step
    def join(self, inputs):
        self.leaves = inputs.join_a.leaves + inputs.join_b.leaves
        self.next(self.end)

    @step
    def end(self):
        self.leaf_names = [name for _, name in self.leaves]


if __name__ == "__main__":
    NestedBranchesFlow()
