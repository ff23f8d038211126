import time

from flowkernel import FlowSpec, Parameter, step, timeout


class SlowFlow(FlowSpec):
    seconds = Parameter("seconds", default=30)

    @timeout(seconds=3)
    @step
    def start(self):
        time.sleep(self.seconds)
        self.next(self.end)

    @step
    def end(self):
        pass
