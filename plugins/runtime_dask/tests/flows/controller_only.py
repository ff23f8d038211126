"""A flow that imports only in a `flow run` process: every step fails to import it."""

import sys

from flowkernel import FlowSpec, step

if "run" not in sys.argv:
    raise RuntimeError("this flow imports only where it is run")


class DaskControllerOnlyFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    DaskControllerOnlyFlow()
