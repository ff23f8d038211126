"""A :class:`RunView` as one self-contained HTML page: inline CSS and SVG, no script, no network.

Sections: summary, graph (SVG, steps coloured by outcome), timeline (SVG Gantt: one bar per
attempt, packed into lanes per step, retries outlined), steps (durations), failures (with the
failed attempt's stderr, where the traceback is), tasks (artifacts and logs, collapsible).
"""

from __future__ import annotations

import time
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowkernel.graph.model import Node
    from flowkernel_report.model import Attempt, RunView, TaskView

COLORS = {
    "ok": "#2e9d4f",
    "caught": "#c9a227",
    "retried": "#e8892b",
    "failed": "#d13b3b",
    "running": "#8a8f98",
    "not run": "#c8ccd2",
}
CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2330}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse} td,th{padding:3px 10px;text-align:left;border-bottom:1px solid #eee}
th{background:#f5f6f8} td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f6f7f9;padding:8px;overflow-x:auto;max-height:420px;font-size:12px;margin:4px 0}
.badge{display:inline-block;padding:1px 8px;border-radius:9px;color:#fff;font-size:12px}
details{margin:3px 0} summary{cursor:pointer} .muted{color:#6b7280}
svg text{font:12px system-ui,sans-serif}
.legend span{display:inline-block;margin-right:14px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
"""


def _clock(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _secs(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.2f} s" if seconds < 60 else f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def _badge(status: str) -> str:
    color = COLORS.get(status, COLORS["ok" if status == "succeeded" else "failed"])
    if status == "running":
        color = COLORS["running"]
    return f'<span class="badge" style="background:{color}">{escape(status)}</span>'


def _step_status(tasks: list[TaskView]) -> str:
    if not tasks:
        return "not run"
    finals = {t.final.status for t in tasks}
    for status in ("failed", "running", "caught"):
        if status in finals:
            return status
    return "ok"


# -- graph ----------------------------------------------------------------------------------


def graph_svg(run: RunView, by_step: dict[str, list[TaskView]]) -> str:
    """The run's stored graph (core's SVG rendering), each step coloured by its outcome."""
    from flowkernel.graph.model import FlowGraph
    from flowkernel.graph.svg import StepLook, graph_svg

    if not run.graph.get("steps"):
        return '<p class="muted">This run stored no graph.</p>'

    def look(node: Node) -> StepLook:
        tasks = by_step.get(node.name, [])
        status = _step_status(tasks)
        note = f"{len(tasks)} task{'s' if len(tasks) != 1 else ''} · {node.type}"
        return StepLook(
            fill=COLORS[status],
            stroke=COLORS[status],
            fill_opacity=0.15,
            note=note,
            tooltip=f"{node.name}: {status}, {note}",
            data={"status": status},
        )

    return graph_svg(FlowGraph.from_dict(run.graph), look, element_id="graph")


# -- timeline -------------------------------------------------------------------------------


def _lanes(attempts: list[tuple[TaskView, Attempt]]) -> list[list[tuple[TaskView, Attempt]]]:
    """Pack bars into as few lanes as do not overlap (greedy, by start time)."""
    lanes: list[list[tuple[TaskView, Attempt]]] = []
    ends: list[float] = []
    for item in sorted(attempts, key=lambda ta: ta[1].started_at or 0.0):
        start = item[1].started_at or 0.0
        end = item[1].finished_at or start
        for i, lane_end in enumerate(ends):
            if lane_end <= start:
                lanes[i].append(item)
                ends[i] = end
                break
        else:
            lanes.append([item])
            ends.append(end)
    return lanes


def timeline_svg(run: RunView, by_step: dict[str, list[TaskView]]) -> str:
    timed = [
        (t, a) for t in run.tasks for a in t.attempts if a.started_at is not None and not t.cloned
    ]
    if not timed:
        return '<p class="muted">No task of this run ran (all cloned, or none started).</p>'
    t0 = min(a.started_at for _, a in timed)
    t1 = max((a.finished_at or a.started_at) for _, a in timed)
    span = max(t1 - t0, 1e-3)
    label_w, plot_w, lane_h = 130, 900, 14
    scale = plot_w / span
    parts: list[str] = []
    y = 24
    for step in run.steps():
        items = [(t, a) for t, a in timed if t.step == step]
        if not items:
            continue
        lanes = _lanes(items)
        parts.append(
            f'<text x="4" y="{y + 11}" font-weight="600">{escape(step)}</text>'
            f'<text x="4" y="{y + 25}" fill="#6b7280">{len(items)} attempt'
            f"{'s' if len(items) != 1 else ''}</text>"
        )
        for lane in lanes:
            for task, attempt in lane:
                x = label_w + (attempt.started_at - t0) * scale
                end = attempt.finished_at or attempt.started_at
                w = max((end - attempt.started_at) * scale, 2.0)
                dur = end - attempt.started_at if attempt.finished_at else None
                retry = f" (retry {attempt.number})" if attempt.number else ""
                stroke = ' stroke="#1d2330" stroke-width="1.5"' if attempt.number else ""
                parts.append(
                    f'<rect class="bar" data-task="{escape(task.step)}/{escape(task.task_id)}" '
                    f'data-attempt="{attempt.number}" data-status="{attempt.status}" '
                    f'x="{x:.1f}" y="{y}" width="{w:.1f}" height="{lane_h - 3}" rx="2" '
                    f'fill="{COLORS[attempt.status]}"{stroke}><title>{escape(task.step)}/'
                    f"{escape(task.task_id)} attempt {attempt.number}{retry}: "
                    f"{attempt.status}, {_secs(dur)}</title></rect>"
                )
            y += lane_h
        y += 18
    ticks = []
    for i in range(6):
        x = label_w + plot_w * i / 5
        ticks.append(
            f'<line x1="{x:.0f}" y1="18" x2="{x:.0f}" y2="{y}" stroke="#e5e7eb"/>'
            f'<text x="{x:.0f}" y="12" text-anchor="middle" fill="#6b7280">'
            f"{span * i / 5:.2f} s</text>"
        )
    width = label_w + plot_w + 40
    return (
        f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" '
        f'viewBox="0 0 {width} {y}" role="img" aria-label="task timeline">'
        + "".join(ticks)
        + "".join(parts)
        + "</svg>"
    )


# -- tables ---------------------------------------------------------------------------------


def steps_table(run: RunView, by_step: dict[str, list[TaskView]]) -> str:
    rows = []
    for step in run.steps():
        tasks = by_step.get(step, [])
        durations = [
            a.finished_at - a.started_at
            for t in tasks
            for a in t.attempts
            if a.started_at and a.finished_at and not t.cloned
        ]
        starts = [a.started_at for t in tasks for a in t.attempts if a.started_at]
        ends = [a.finished_at for t in tasks for a in t.attempts if a.finished_at]
        wall = max(ends) - min(starts) if starts and ends else None
        retries = sum(len(t.attempts) - 1 for t in tasks)
        rows.append(
            f"<tr><td>{escape(step)}</td><td>{_badge(_step_status(tasks))}</td>"
            f'<td class="num">{len(tasks)}</td><td class="num">{retries}</td>'
            f'<td class="num">{_secs(wall)}</td>'
            f'<td class="num">{_secs(sum(durations) / len(durations)) if durations else "-"}</td>'
            f'<td class="num">{_secs(max(durations)) if durations else "-"}</td></tr>'
        )
    return (
        '<table id="steps"><tr><th>step</th><th>status</th><th>tasks</th><th>retries</th>'
        "<th>wall time</th><th>mean task</th><th>longest task</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def failures(run: RunView) -> str:
    items = []
    for task in run.tasks:
        for a in task.attempts:
            if a.status in ("failed", "retried", "caught"):
                where = f"{run.flow}/{run.run_id}/{task.step}/{task.task_id}"
                items.append(
                    f'<div class="failure"><h3>{escape(where)} attempt {a.number} '
                    f"{_badge(a.status)}</h3><p>{escape(a.exception or 'no exception recorded')}"
                    f"</p><pre>{escape(a.stderr or '(no stderr)')}</pre></div>"
                )
    return "".join(items) or '<p class="muted">No task failed.</p>'


def _duration(a: Attempt) -> float | None:
    return a.finished_at - a.started_at if a.finished_at and a.started_at else None


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "-"


def tasks_section(run: RunView, by_step: dict[str, list[TaskView]]) -> str:
    out = []
    for step in run.steps():
        tasks = by_step.get(step, [])
        if not tasks:
            continue
        inner = []
        for task in tasks:
            arts = "".join(
                f"<tr><td>{escape(a.name)}</td><td>{escape(a.type)}</td>"
                f'<td class="num">{_size(a.size)}</td></tr>'
                for a in task.artifacts
            )
            logs = "".join(
                f"<p>attempt {a.number} {_badge(a.status)} {_clock(a.started_at)}"
                f" ({_secs(_duration(a))})</p>"
                f"<pre>{escape(a.stdout) or '(no stdout)'}</pre>"
                + (f"<pre>{escape(a.stderr)}</pre>" if a.stderr else "")
                for a in task.attempts
            )
            cloned = " (cloned from the origin run)" if task.cloned else ""
            inner.append(
                f'<details class="task"><summary>{escape(step)}/{escape(task.task_id)} '
                f"{_badge(task.final.status)}{cloned}</summary>"
                f"<table><tr><th>artifact</th><th>type</th><th>size</th></tr>{arts}</table>"
                f"{logs}</details>"
            )
        out.append(
            f"<details><summary><b>{escape(step)}</b> ({len(tasks)} tasks)</summary>"
            f"{''.join(inner)}</details>"
        )
    return "".join(out)


def render(run: RunView) -> str:
    by_step: dict[str, list[TaskView]] = {}
    for task in run.tasks:
        by_step.setdefault(task.step, []).append(task)
    duration = run.finished_at - run.started_at if run.finished_at else None
    legend = "".join(f'<span><i style="background:{c}"></i>{s}</span>' for s, c in COLORS.items())
    meta = [
        f"status {_badge(run.status)}",
        f"started {_clock(run.started_at)}",
        f"duration {_secs(duration)}",
        f"{len(run.tasks)} tasks",
    ]
    if run.user:
        meta.append(f"user {escape(run.user)}")
    if run.tags:
        meta.append("tags " + ", ".join(escape(t) for t in run.tags))
    if run.origin_run_id:
        meta.append(f"resumed from run {escape(run.origin_run_id)}")
    title = f"{run.flow}/{run.run_id}"
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}: flowkernel run report</title><style>{CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1><p>{' · '.join(meta)}</p>"
        f'<p class="legend">{legend}</p>'
        f"<h2>Graph</h2>{graph_svg(run, by_step)}"
        f"<h2>Timeline</h2>{timeline_svg(run, by_step)}"
        f"<h2>Steps</h2>{steps_table(run, by_step)}"
        f'<h2>Failures</h2><div id="failures">{failures(run)}</div>'
        f'<h2>Tasks</h2><div id="tasks">{tasks_section(run, by_step)}</div>'
        "</body></html>\n"
    )
