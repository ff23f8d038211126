"""A flow that tags its own run while it runs."""

from flowkernel import FlowSpec, current, step


class SelfTaggingFlow(FlowSpec):
    @step
    def start(self):
        current.run.add_tag("tagged-by-start")
        self.next(self.end)

    @step
    def end(self):
        self.tags_seen = sorted(current.run.user_tags)


if __name__ == "__main__":
    SelfTaggingFlow()
