"""Config: settings read before the graph is built, used in decorators, defaults and steps.

Run it with the settings of configured.json, then with other ones::

    flow run examples/configured.py
    flow run examples/configured.py --config-value settings \\
        '{"learning_rates": [0.5], "retries": 0, "epochs": 1}'
"""

from flowkernel import Config, FlowSpec, Parameter, config_expr, retry, step


class ConfiguredFlow(FlowSpec):
    settings = Config("settings", default="configured.json", help="Training settings.")
    epochs = Parameter("epochs", default=config_expr("settings.epochs"))

    @step
    def start(self):
        self.rates = list(self.settings.learning_rates)
        self.next(self.train, foreach="rates")

    @retry(times=config_expr("settings.retries"))
    @step
    def train(self):
        self.loss = round(1.0 / (1 + self.input * self.epochs), 4)
        self.next(self.pick)

    @step
    def pick(self, inputs):
        self.best_loss, self.best_rate = min((i.loss, i.input) for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        print(f"best learning rate {self.best_rate} (loss {self.best_loss})")


if __name__ == "__main__":
    ConfiguredFlow()
