"""`**config` unpacked into decorator keyword arguments while the class body runs."""

from flowkernel import Config, FlowSpec, environment, step


class UnpackFlow(FlowSpec):
    env = Config("env", default_value={"vars": {"GREETING": "hi"}})

    @environment(**env)
    @step
    def start(self):
        import os

        self.greeting = os.environ["GREETING"]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    UnpackFlow()
