"""What a task sees of the process it runs in: at-fork hooks, random, threads, logging, pools,
subprocesses. The module is imported by the controller, before the fork server is forked from
it; ``FASTFORK_FLOW_SETUP`` (read at import) puts the server in a state where the fork of a
task must keep the interpreter's generic after-fork work (see flowkernel.engine.fastfork):

* ``hooks`` (default): an ``after_in_child`` hook only;
* ``parent_hooks``: also ``before`` and ``after_in_parent`` hooks, which append to the file
  ``FASTFORK_FLOW_LOG``;
* ``signal``: a Python-level SIGUSR1 handler;
* ``c_thread``: in the server, a thread threading does not know (``_thread``);
* ``thread_object``: in the server, a ``threading.Thread`` made and not started;

(the last two by the after_in_child hook, in the fork server when the controller forks it);
* ``raising_hook``: an ``after_in_child`` hook that raises.
"""

import logging
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from flowkernel import FlowSpec, step

SETUP = os.environ.get("FASTFORK_FLOW_SETUP", "hooks")
HOOK = {"child": None, "audits": 0}


def _in_child():
    HOOK["child"] = os.getpid()
    frame = sys._getframe(1)
    while frame is not None:  # the fork server, just forked by the controller's ForkServer.start
        code = frame.f_code
        if code.co_name == "start" and code.co_filename.endswith("forkserver.py"):
            _set_up_server()
            return
        frame = frame.f_back


def _set_up_server():
    if SETUP == "c_thread":
        import _thread

        _thread.start_new_thread(time.sleep, (600,))
    elif SETUP == "thread_object":
        HOOK["unstarted"] = threading.Thread(target=print)


def _log(what):
    with open(os.environ["FASTFORK_FLOW_LOG"], "a") as out:
        out.write(f"{what} {os.getpid()}\n")


def _raise():
    raise ValueError("the flow's after_in_child hook failed")


def _audit(event, args):
    if event == "os.fork":
        HOOK["audits"] += 1


os.register_at_fork(after_in_child=_in_child)
sys.addaudithook(_audit)
if SETUP == "parent_hooks":
    os.register_at_fork(before=lambda: _log("before"), after_in_parent=lambda: _log("parent"))
elif SETUP == "signal":
    signal.signal(signal.SIGUSR1, lambda *_: None)
elif SETUP == "raising_hook":
    os.register_at_fork(after_in_child=_raise)


def _grandchild(queue):
    queue.put((os.getpid(), random.random()))


class FastForkFlow(FlowSpec):
    @step
    def start(self):
        self.items = list(range(4))
        self.next(self.body, foreach="items")

    @step
    def body(self):
        from flowkernel.engine import fastfork

        self.how = fastfork.last
        self.pid = os.getpid()
        self.ppid = os.getppid()
        self.hook_pid = HOOK["child"]
        self.audits = HOOK["audits"]
        self.rand = random.random()
        main = threading.main_thread()
        self.native = threading.get_native_id()
        self.main_native_is_pid = main.native_id == self.pid
        self.ident_is_main = threading.get_ident() == main.ident
        self.current_is_main = threading.current_thread() is main
        self.threads = [t.name for t in threading.enumerate()]
        seen = []
        worker = threading.Thread(target=lambda: seen.append(threading.get_native_id()))
        worker.start()
        worker.join()
        self.thread_ran = len(seen) == 1 and seen[0] not in (self.pid, None)
        self.thread_stopped = not worker.is_alive()
        log = logging.getLogger("fastfork_flow")
        log.addHandler(logging.StreamHandler(sys.stderr))
        log.warning("logged %d", self.input)
        with ThreadPoolExecutor(2) as pool:
            self.squares = list(pool.map(lambda x: x * x, range(4)))
        done = subprocess.run([sys.executable, "-c", "print('sub')"], capture_output=True)
        self.sub = done.stdout.decode().strip()
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(2) as pool:
            self.mp = pool.map(abs, [-1, -2])
        queue = ctx.Queue()
        child = ctx.Process(target=_grandchild, args=(queue,))
        child.start()
        self.grandchild = queue.get(timeout=60)
        child.join()
        self.next(self.join)

    @step
    def join(self, inputs):
        self.next(self.end)

    @step
    def end(self):
        pass
