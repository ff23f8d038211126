"""The smallest flow: used for usage errors, --run-id-file, --tag and concurrent runs."""

import os
import time

from flowkernel import FlowSpec, Parameter, current, step


class LinearFlow(FlowSpec):
    value = Parameter("value", default="none", help="Stored as an artifact.")
    nap = Parameter("nap", default=0.0, help="Seconds start sleeps.")

    @step
    def start(self):
        id_file = os.environ.get("ROBUST_RUN_ID_FILE")
        if id_file:
            with open(id_file) as fh:  # written before any task started
                self.id_file_seen = fh.read()
        self.run_id_seen = current.run_id
        self.tags_seen = sorted(current.tags)
        time.sleep(float(self.nap))
        self.echo = self.value
        self.next(self.end)

    @step
    def end(self):
        print("value", self.echo)


if __name__ == "__main__":
    LinearFlow()
