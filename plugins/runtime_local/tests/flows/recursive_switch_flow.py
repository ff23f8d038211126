"""start -> loop (switch: continue -> loop, exit -> exit_loop) -> end: ten iterations."""

from flowkernel import FlowSpec, step


class RecursiveSwitchFlow(FlowSpec):
    @step
    def start(self):
        self.count = 0
        self.next(self.loop)

    @step
    def loop(self):
        self.count += 1
        self.go = "exit" if self.count >= 10 else "continue"
        self.next({"continue": self.loop, "exit": self.exit_loop}, condition="go")

    @step
    def exit_loop(self):
        self.final = self.count
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    RecursiveSwitchFlow()
