from flowkernel import FlowSpec, Parameter, schedule, step


@schedule(cron="*/15 * * * ? *", timezone="Europe/Paris")
class ScheduledFlow(FlowSpec):
    alpha = Parameter("alpha", default=2)

    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass
