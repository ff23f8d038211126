"""A deployed flow whose pods may be retried (@retry on every step): a parameter, a foreach."""

from flowkernel import FlowSpec, Parameter, current, retry, step


class RetriedPodsFlow(FlowSpec):
    alpha = Parameter("alpha", default=3)

    @retry(times=1, minutes_between_retries=0)
    @step
    def start(self):
        self.start_attempt = current.retry_count
        self.items = [1, 2]
        self.next(self.work, foreach="items")

    @retry(times=1, minutes_between_retries=0)
    @step
    def work(self):
        self.value = self.input * self.alpha
        self.next(self.join)

    @retry(times=1, minutes_between_retries=0)
    @step
    def join(self, inputs):
        self.total = sum(i.value for i in inputs)
        self.next(self.end)

    @retry(times=1, minutes_between_retries=0)
    @step
    def end(self):
        self.end_attempt = current.retry_count


if __name__ == "__main__":
    RetriedPodsFlow()
