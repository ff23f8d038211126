"""A @project flow: where its runs belong, as each task sees it."""

from flowkernel import FlowSpec, current, project, step


@project(name="fk_demo")
class ProjectFlow(FlowSpec):
    @step
    def start(self):
        self.where = (
            current.project_name,
            current.branch_name,
            current.is_production,
            current.is_user_branch,
            current.project_flow_name,
            current.username,
        )
        self.next(self.end)

    @step
    def end(self):
        self.branch_at_end = current.branch_name
