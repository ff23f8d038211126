"""A foreach whose body imports a module beside the flow; every task records the directory its
code was imported from (``code_dir``), to tell a code package from the flow's own folder."""

import os

import helper

from flowkernel import FlowSpec, Parameter, step


class DaskPackagedFlow(FlowSpec):
    n = Parameter("n", default=3, type=int)

    @step
    def start(self):
        self.items = list(range(self.n))
        self.code_dir = os.path.dirname(os.path.abspath(__file__))
        self.next(self.work, foreach="items")

    @step
    def work(self):
        self.value = helper.cube(self.input)
        self.code_dir = os.path.dirname(os.path.abspath(__file__))
        print(f"cube of {self.input} is {self.value}")
        self.next(self.join)

    @step
    def join(self, inputs):
        self.values = [inp.value for inp in inputs]
        self.code_dirs = sorted({inp.code_dir for inp in inputs})
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    DaskPackagedFlow()
