import os
import time

from flowkernel import FlowSpec, step


class SlowFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.a, self.b)

    @step
    def a(self):
        print("a is sleeping", flush=True)
        time.sleep(float(os.environ.get("SLOW_SECONDS", "30")))
        self.next(self.join)

    @step
    def b(self):
        print("b is sleeping", flush=True)
        time.sleep(float(os.environ.get("SLOW_SECONDS", "30")))
        self.next(self.join)

    @step
    def join(self, inputs):
        self.next(self.end)

    @step
    def end(self):
        print("finished")


if __name__ == "__main__":
    SlowFlow()
