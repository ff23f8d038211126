"""@retry, @catch, @timeout, @environment and `current`, then the client inside a running flow."""

import os
import time

from flowkernel import Flow, FlowSpec, catch, current, environment, retry, step, timeout


def current_fields():
    return {
        "flow_name": current.flow_name,
        "run_id": current.run_id,
        "step_name": current.step_name,
        "task_id": current.task_id,
        "retry_count": current.retry_count,
        "pathspec": current.pathspec,
        "parameter_names": current.parameter_names,
        "is_running_flow": current.is_running_flow,
        "graph_start": current.graph["start_step"],
        "graph_steps": sorted(current.graph["steps"]),
        "tempdir_exists": os.path.isdir(current.tempdir),
    }


class DecoratorsFlow(FlowSpec):
    @step
    def start(self):
        self.x = "from start"
        self.current_in_start = current_fields()
        self.next(self.flaky)

    @retry(times=2)
    @step
    def flaky(self):
        attempt = current.retry_count
        setattr(self, f"set_in_attempt_{attempt}", True)
        self.attempt_seen = attempt
        self.current_in_flaky = current_fields()
        if attempt < 2:
            raise RuntimeError(f"failing attempt {attempt} on purpose")
        self.next(self.caught)

    @catch(var="error")
    @step
    def caught(self):
        self.before_error = "kept"
        raise ValueError("boom in caught")
        self.next(self.slow)

    @catch(var="timeout_error")
    @timeout(seconds=1)
    @step
    def slow(self):
        self.before_timeout = "kept too"
        time.sleep(60)  # interrupted by the 1 s timeout, well before this ends
        self.after_timeout = "never"
        self.next(self.env_step)

    @environment(vars={"FK_TEST_ENV_VAR": 5})
    @step
    def env_step(self):
        self.env_value = os.environ.get("FK_TEST_ENV_VAR")
        self.next(self.no_env)

    @catch(var="unused")
    @step
    def no_env(self):
        self.env_value_after = os.environ.get("FK_TEST_ENV_VAR")
        self.next(self.end)

    @step
    def end(self):
        self.current_run_x = current.run["start"].task.data.x
        self.client_x = Flow(current.flow_name)[current.run_id]["start"].task.data.x
        self.client_attempt = current.run["flaky"].task.data.attempt_seen
        self.current_task_pathspec = current.task.pathspec


if __name__ == "__main__":
    DecoratorsFlow()
