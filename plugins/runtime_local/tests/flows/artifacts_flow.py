"""What is an artifact: underscore names, constants and parameters, `name`, in-place mutation,
and a class defined in this file."""

from flowkernel import FlowSpec, Parameter, current, step


class Point:
    """Defined in the flow file: pickled as __main__.Point or artifacts_flow.Point."""

    def __init__(self, x, y):
        self.x = x
        self.y = y

    def __repr__(self):
        return f"Point({self.x}, {self.y})"


class ArtifactsFlow(FlowSpec):
    CONST = 42
    lower_const = "lower"
    LIST_CONST = [1, 2]
    alpha = Parameter("alpha", default=5)
    beta = Parameter("beta-value", default="b")

    @step
    def start(self):
        self._hidden = "underscore"
        self.visible = "plain"
        self.items = [1]
        self.point = Point(1, 2)
        self.param_names = list(current.parameter_names)
        self.readonly_errors = self._try_assign()
        self.LIST_CONST.append(3)  # in place: allowed, never persisted
        self.next(self.a, self.b)

    def _try_assign(self):
        errors = {}
        for name in ("CONST", "lower_const", "LIST_CONST", "alpha", "beta", "name"):
            try:
                setattr(self, name, "changed")
            except AttributeError as exc:
                errors[name] = str(exc)
        return errors

    @step
    def a(self):
        self.items.append(2)
        self.hidden_seen = self._hidden
        self.next(self.a2)

    @step
    def a2(self):
        self.items_in_a2 = list(self.items)
        self.next(self.join)

    @step
    def b(self):
        self.items_in_b = list(self.items)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.join_sees = {
            "CONST": self.CONST,
            "lower_const": self.lower_const,
            "LIST_CONST": self.LIST_CONST,
            "alpha": self.alpha,
            "beta": self.beta,
            "name": self.name,
        }
        self.join_readonly_errors = sorted(self._try_assign())
        self.items_by_branch = (inputs.a2.items, inputs.b.items)
        self.next(self.end)

    @step
    def end(self):
        self.end_sees = (self.CONST, self.alpha, self.beta, self.name)


if __name__ == "__main__":
    ArtifactsFlow()
