from flowkernel import FlowSpec, step


class AVeryLongFlowNameThatGoesOnAndOnAndOnForeverAndEverFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.a_step_name_that_is_much_longer_than_sixty_three_characters_in_total_x)

    @step
    def a_step_name_that_is_much_longer_than_sixty_three_characters_in_total_x(self):
        self.next(self.end)

    @step
    def end(self):
        pass
