"""The smallest useful flow: a parameter, an artifact, three steps."""

from flowkernel import FlowSpec, Parameter, step


class HelloFlow(FlowSpec):
    """Say hello a few times."""

    name_to_greet = Parameter("who", default="world", help="Whom to greet.")
    times = Parameter("times", default=2, help="How many greetings.")

    @step
    def start(self):
        """Build the greetings."""
        self.greetings = [f"hello, {self.name_to_greet}!" for _ in range(self.times)]
        self.next(self.shout)

    @step
    def shout(self):
        """Print them."""
        for greeting in self.greetings:
            print(greeting)
        self.loudest = self.greetings[-1].upper()
        self.next(self.end)

    @step
    def end(self):
        """Done."""
        print("loudest:", self.loudest)


if __name__ == "__main__":
    HelloFlow()
