"""Every way a Parameter gets its value."""

import os

from flowkernel import FlowSpec, IncludeFile, JSONType, Parameter, current, step


def counted_default(ctx):
    if os.environ.get("COUNTER_FILE"):
        with open(os.environ["COUNTER_FILE"], "a") as fh:
            fh.write(f"{ctx.flow_name}:{ctx.parameter_name}\n")
    return f"computed for {ctx.parameter_name}"


class ParamsFlow(FlowSpec):
    alpha = Parameter("alpha", default=1, help="an int from the command line")
    from_env = Parameter("env-dashed", default="default")
    flag = Parameter("flag", default=True)
    ratio = Parameter("ratio", default=0.5)
    listed_default = Parameter("listed-default", default="a,b,c", separator=",")
    listed = Parameter("listed", default="x", separator=":")
    json_default = Parameter("json-default", type=JSONType, default='{"a": [1, 2, 3]}')
    json_given = Parameter("json-given", type=JSONType, default="{}")
    no_default = Parameter("no-default")
    computed = Parameter("computed", default=counted_default)
    text_file = IncludeFile("text-file")
    binary_file = IncludeFile("binary-file", is_text=False)
    absent_file = IncludeFile("absent-file")
    needed = Parameter("needed", required=True)

    @step
    def start(self):
        self.seen = {name: getattr(self, name) for name in current.parameter_names}
        self.param_names = list(current.parameter_names)
        self.fan = [0, 1, 2]
        self.next(self.each, foreach="fan")

    @step
    def each(self):
        self.each_computed = self.computed
        self.next(self.join)

    @step
    def join(self, inputs):
        self.join_seen = {name: getattr(self, name) for name in current.parameter_names}
        self.computed_in_branches = sorted({inp.each_computed for inp in inputs})
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ParamsFlow()
