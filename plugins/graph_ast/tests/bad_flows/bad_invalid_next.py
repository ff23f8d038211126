from flowkernel import FlowSpec, step

VARIABLE = "x"


class InvalidNextFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.a, foreach="items", num_parallel=2)  # expect: invalid-next

    @step
    def a(self):
        self.next(self.b, unknown=1)  # expect: invalid-next

    @step
    def b(self):
        self.next(self.c, self.d, foreach="items")  # expect: invalid-next

    @step
    def c(self):
        self.next("d")  # expect: invalid-next

    @step
    def d(self):
        self.next({"x": self.e, "y": self.f})  # expect: invalid-next

    @step
    def e(self):
        self.next({"x": self.f, "y": self.end}, condition=VARIABLE)  # expect: invalid-next

    @step
    def f(self):
        self.next({VARIABLE: self.g, "y": self.end}, condition="v")  # expect: invalid-next

    @step
    def g(self):
        self.next(self.h, num_parallel=0)  # expect: invalid-next

    @step
    def h(self):
        self.next()  # expect: invalid-next

    @step
    def end(self):
        pass
