"""The smallest flow: one step that is both start and end."""

from flowkernel import FlowSpec, step


class SingleStepFlow(FlowSpec):
    @step
    def only(self):
        """Do everything at once."""
        self.answer = 42
        print("the answer is", self.answer)


if __name__ == "__main__":
    SingleStepFlow()
