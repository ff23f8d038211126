"""Stores its parameter's value as it arrived, and its length (injection tests)."""

from flowkernel import FlowSpec, JSONType, Parameter, step


class EchoFlow(FlowSpec):
    value = Parameter("value", default="")
    doc = Parameter("doc", type=JSONType, default="null")

    @step
    def start(self):
        self.seen = self.value
        self.seen_doc = self.doc
        self.next(self.end)

    @step
    def end(self):
        pass
