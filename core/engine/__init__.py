"""The engine shared by every runtime: starting runs and resumes (:mod:`.runs`), the task
executor behind ``flow step`` (:mod:`.executor`), which tasks become ready (:mod:`.scheduling`),
log sinks (:mod:`.logs`) and the poller contract (:mod:`.poller`)."""
