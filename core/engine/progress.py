"""The live progress display of a run on a terminal (rich), and the counts behind it.

A runtime's controller reports what happens (:meth:`Progress.queued`, :meth:`started`,
:meth:`finished`) and calls :meth:`Progress.tick` from its loop. On a terminal, :func:`progress_for`
returns a :class:`LiveProgress`: a table under the task output, per step done / running / failed /
total, with the elapsed time and an ETA. Everything else (not a TTY, ``--quiet``,
``FLOWKERNEL_PROGRESS=0``, ``TERM=dumb``) gets :class:`Progress`, which only counts, so the plain
line output, ``Runner`` and notebook capture are untouched.

No thread is started: the display refreshes from the controller's loop (at most
:data:`REFRESH_SECONDS` apart), so forking task processes stays safe. While the display is live,
``sys.stdout`` / ``sys.stderr`` are replaced by buffers that are written above the table at each
refresh, one write per refresh however many lines arrived.
"""

from __future__ import annotations

import io
import os
import sys
import time
from typing import Any

import attrs

#: Least time between two redraws of the live display.
REFRESH_SECONDS = 0.2


@attrs.define
class StepCounts:
    """Tasks of one step: each queued task is in ``total``; a retried attempt is not new."""

    total: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0


@attrs.define
class Progress:
    """Counts per step, in the order steps first appear. Does not display anything."""

    started_at: float = attrs.field(factory=time.time)
    steps: dict[str, StepCounts] = attrs.field(factory=dict)

    def _step(self, step: str) -> StepCounts:
        counts = self.steps.get(step)
        if counts is None:
            counts = self.steps[step] = StepCounts()
        return counts

    def queued(self, step: str, n: int = 1) -> None:
        self._step(step).total += n

    def started(self, step: str) -> None:
        self._step(step).running += 1

    def finished(
        self,
        step: str,
        ok: bool,
        will_retry: bool = False,
        cloned: bool = False,
        running: bool = True,
    ) -> None:
        """An attempt ended (``cloned``: a resume copied the task, it never ran; ``running``
        False: it was never counted as running, it never started)."""
        counts = self._step(step)
        if running and not cloned:
            counts.running = max(0, counts.running - 1)
        if ok:
            counts.done += 1
        elif not will_retry:
            counts.failed += 1

    @property
    def totals(self) -> StepCounts:
        return StepCounts(
            total=sum(c.total for c in self.steps.values()),
            running=sum(c.running for c in self.steps.values()),
            done=sum(c.done for c in self.steps.values()),
            failed=sum(c.failed for c in self.steps.values()),
        )

    def eta(self, now: float | None = None) -> float | None:
        """Seconds until the known tasks are done, at the rate so far (None before a task ended).

        Tasks a foreach has not created yet are unknown, so the ETA grows when one splits.
        """
        totals = self.totals
        finished = totals.done + totals.failed
        if not finished:
            return None
        elapsed = (now or time.time()) - self.started_at
        return max(0.0, (totals.total - finished) * elapsed / finished)

    @property
    def live(self) -> bool:
        return False

    def tick(self) -> None:
        """Called often by the controller's loop: redraw if due (nothing here)."""

    def stop(self) -> None:
        """The run is over: take the display down (nothing here)."""


def live_wanted(quiet: bool) -> bool:
    """A live display only on an interactive terminal, and only if nobody asked for quiet."""
    if quiet or os.environ.get("FLOWKERNEL_PROGRESS", "1") == "0":
        return False
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stdout
        return False


def progress_for(quiet: bool, title: str) -> Progress:
    """:class:`LiveProgress` (started) on a terminal, else counting-only :class:`Progress`."""
    if not live_wanted(quiet):
        return Progress()
    try:
        display = LiveProgress(title=title)
        display.start()
    except ImportError:  # rich missing from a broken install: plain output still works
        return Progress()
    return display


class _Buffer(io.TextIOBase):
    """Stands in for ``sys.stdout`` / ``sys.stderr`` while the display is live: keeps what is
    written (text, or bytes through ``.buffer``) until the next refresh writes it out."""

    def __init__(self, chunks: list[bytes]):
        self._chunks = chunks
        self.buffer = self  # ConsoleSink writes bytes to ``sys.stdout.buffer``
        self.lost = False  #: the terminal went away: writes fail as they would on it

    def write(self, data: Any) -> int:
        if self.lost:
            raise BrokenPipeError("the terminal is gone")
        self._chunks.append(data if isinstance(data, bytes) else data.encode("utf-8", "replace"))
        return len(data)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return True

    def flush(self) -> None:
        pass


@attrs.define(eq=False)
class LiveProgress(Progress):
    """:class:`Progress` drawn live with rich at the bottom of the terminal."""

    title: str = ""
    _chunks: list[bytes] = attrs.field(factory=list)
    _saved: tuple[Any, Any] | None = None
    _live: Any = None
    _last_draw: float = 0.0

    @property
    def live(self) -> bool:
        return self._live is not None

    def start(self) -> None:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=sys.stdout, highlight=False)
        self._live = Live(
            console=console,
            auto_refresh=False,  # no refresh thread: the controller forks task processes
            redirect_stdout=False,
            redirect_stderr=False,
            transient=False,
            get_renderable=self._render,
        )
        self._live.start()
        self._saved = (sys.stdout, sys.stderr)
        sys.stdout = sys.stderr = _Buffer(self._chunks)

    def tick(self) -> None:
        now = time.time()
        if self._live is not None and now - self._last_draw >= REFRESH_SECONDS:
            try:
                self._draw(now)
            except OSError:  # the terminal is gone (EIO, EPIPE): the run goes on without it
                self._lose_terminal()

    def _lose_terminal(self) -> None:
        """Stop drawing; later console writes fail as on a closed pipe, which a runtime handles
        (it drops its console sinks and keeps the log files)."""
        self._live = None
        self._chunks.clear()
        if self._saved is not None:
            buffer = sys.stdout
            sys.stdout, sys.stderr = self._saved
            self._saved = None
            if isinstance(buffer, _Buffer):
                buffer.lost = True

    def _draw(self, now: float) -> None:
        self._last_draw = now
        console = self._live.console
        with console:  # one write to the terminal: the new table, then output above it
            self._live.refresh()
            if self._chunks:
                from rich.text import Text

                data = b"".join(self._chunks).decode("utf-8", "replace").rstrip("\n")
                self._chunks.clear()
                console.print(Text(data), soft_wrap=True)

    def stop(self) -> None:
        if self._live is None:
            return
        try:
            self._draw(time.time())
            self._live.stop()
        except OSError:
            pass  # the terminal is gone: nothing left to take down
        finally:
            self._live = None
            if self._saved is not None:
                sys.stdout, sys.stderr = self._saved
                self._saved = None

    def _render(self) -> Any:
        """One line per step and a summary line, as a single rich Text (a Table measures every
        cell on every redraw: ~25 ms for five steps, too slow for 10 redraws a second)."""
        from rich.text import Text

        now = time.time()
        width = max((len(name) for name in self.steps), default=0)
        text = Text()
        for name, c in self.steps.items():
            filled = _BAR * (c.done + c.failed) // max(c.total, 1)
            text.append(f"{name:<{width}}  ")
            text.append("━" * filled, style="red" if c.failed else "green")
            text.append("━" * (_BAR - filled), style="bright_black")
            text.append(f"  {c.done}/{c.total} done  {c.running} running")
            if c.failed:
                text.append(f"  {c.failed} failed", style="red")
            text.append("\n")
        totals = self.totals
        eta = self.eta(now)
        text.append(self.title, style="bold")
        text.append(f"  {totals.done}/{totals.total} tasks done  {totals.running} running")
        if totals.failed:
            text.append(f"  {totals.failed} failed", style="red")
        text.append(f"  elapsed {_clock(now - self.started_at)}")
        if eta is not None and totals.running:
            text.append(f"  ETA {_clock(eta)}")
        return text


_BAR = 24


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
