"""A flow in a project whose name comes from a config: what current.* says about the branch."""

from flowkernel import Config, FlowSpec, config_expr, current, project, step


@project(name=config_expr("settings").project.name)
class ProjectFlow(FlowSpec):
    settings = Config("settings", default_value={"project": {"name": "shop"}})

    @step
    def start(self):
        self.seen = {
            "project_name": current.project_name,
            "branch_name": current.branch_name,
            "is_user_branch": current.is_user_branch,
            "is_production": current.is_production,
            "project_flow_name": current.project_flow_name,
        }
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ProjectFlow()
