"""Retries, a foreach list and a Parameter default, all from a Config."""

from flowkernel import Config, FlowSpec, Parameter, config_expr, current, retry, step


class ConfigFlow(FlowSpec):
    settings = Config("settings", default="settings.json", help="Run settings.")
    count = Parameter("count", default=config_expr("settings.count"))

    @step
    def start(self):
        self.items = list(self.settings["items"])
        self.next(self.work, foreach="items")

    @retry(times=config_expr("settings.retries"))
    @step
    def work(self):
        if current.retry_count < self.settings.retries:
            raise RuntimeError("not yet: fails until the last allowed attempt")
        self.out = self.input * 10
        self.attempts = current.retry_count + 1
        self.next(self.join)

    @step
    def join(self, inputs):
        self.outs = [i.out for i in inputs]
        self.attempts = max(i.attempts for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        try:
            self.settings["count"] = 0
        except TypeError:
            self.immutable = True
        self.seen_count = self.count


if __name__ == "__main__":
    ConfigFlow()
