"""Every decorator the Argo compiler maps, Parameters of each type, and a Config."""

import os

from flowkernel import (
    Config,
    FlowSpec,
    JSONType,
    Parameter,
    catch,
    current,
    environment,
    resources,
    retry,
    step,
    timeout,
)


class DecoratedFlow(FlowSpec):
    alpha = Parameter("alpha", default=3, help="An integer.")
    ratio = Parameter("ratio", default=0.5)
    label = Parameter("label", default="plain")
    flag = Parameter("flag", default=False, type=bool)
    options = Parameter("options", default='{"k": [1, 2]}', type=JSONType)
    free = Parameter("free-text", type=str)
    settings = Config("settings", default_value={"mode": "fast", "depth": 2})

    @retry(times=2, minutes_between_retries=0)
    @step
    def start(self):
        if current.retry_count < 1:
            raise RuntimeError("first attempt fails on purpose")
        self.attempts = current.retry_count + 1
        self.next(self.work)

    @catch(var="problem")
    @resources(cpu=0.5, memory=512, gpu=1)
    @environment(vars={"GREETING": "hello $(HOME)", "TEMPLATED": "{{not.argo}}"})
    @timeout(seconds=90)
    @step
    def work(self):
        self.greeting = os.environ["GREETING"]
        self.templated = os.environ["TEMPLATED"]
        self.mode = self.settings["mode"]
        if self.alpha > 0:
            raise ValueError("caught by @catch")
        self.next(self.end)

    @step
    def end(self):
        self.summary = (self.alpha, self.ratio, self.label, self.flag, self.options, self.free)
