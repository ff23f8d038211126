import time

from flowkernel import FlowSpec, Parameter, step


class SleepyFlow(FlowSpec):
    seconds = Parameter("seconds", default=60)

    @step
    def start(self):
        time.sleep(self.seconds)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    SleepyFlow()
