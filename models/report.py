"""A self-contained HTML report of an evaluation, with one figure per run.

What a data scientist looks at first is where the detector fired against
where the faults were: per run, the anomaly score over time against the
line's threshold, the labelled fault segments shaded, and the alerts marked
below (so a miss, a late detection or a false alarm is visible at a glance),
each alert frame marked by its reason (the score, or the sensor check that
fired, with its sensor in the legend; a check can hold an alert under the
threshold), followed by each alert's reason and ranked sensor contributions -- what the on-call
engineer would have been told to check. Figures are PNGs embedded as base64,
so the file can be mailed or attached to a ticket without its folder.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from lineguard.dashboards.reason_marks import mark_reasons
from lineguard.detectors.points import reason_names
from lineguard.extras import require
from lineguard.models.evaluation import Evaluation, RunEvaluation
from lineguard.models.metrics import format_rate, segments

__all__ = ["render_report", "run_figure", "write_report"]

_LABEL_COLOUR = "#f2b134"
_ALERT_COLOUR = "#d1495b"
_SCORE_COLOUR = "#2e5c8a"


def _times(run: RunEvaluation) -> np.ndarray:
    # Naive UTC datetimes: matplotlib's date axis without a tz database.
    return (run.time_us.astype("datetime64[us]")).astype("datetime64[ms]")


def run_figure(run: RunEvaluation) -> Any:
    """The run's score vs threshold, labelled segments and alerts, as a Figure.

    Top: the score (log scale when all scores are positive, since a fault
    can score 1000x its threshold while normal rows hover below it) and the
    threshold; labelled fault segments shaded. Bottom: one strip for the
    labels and one for the debounced alerts, in the same time axis.
    """
    Figure = require("matplotlib.figure", "reports").Figure
    ticker = require("matplotlib.ticker", "reports")
    NullFormatter, StrMethodFormatter = ticker.NullFormatter, ticker.StrMethodFormatter

    t = _times(run)
    fig = Figure(figsize=(11, 3.6), dpi=90, layout="constrained")
    grid = fig.add_gridspec(2, 1, height_ratios=[4, 1])
    ax = fig.add_subplot(grid[0])
    strip = fig.add_subplot(grid[1], sharex=ax)
    score = np.asarray(run.score, dtype=float)
    positive = bool(score.size) and bool((score > 0).all()) and run.threshold > 0
    if positive:
        ax.set_yscale("log")
    for a, b in segments(run.labels):
        ax.axvspan(t[a], t[b - 1], color=_LABEL_COLOUR, alpha=0.25, lw=0)
    # Break the line across recording gaps instead of drawing a false ramp.
    dt = np.diff(run.time_us)
    gap = np.flatnonzero(dt > 3 * np.median(dt)) if dt.size else np.zeros(0, dtype=int)
    line_t = np.insert(t, gap + 1, np.datetime64("NaT")) if gap.size else t
    line_s = np.insert(score, gap + 1, np.nan) if gap.size else score
    ax.plot(line_t, line_s, color=_SCORE_COLOUR, lw=0.8, label="score")
    ax.axhline(run.threshold, color="black", ls="--", lw=1, label="threshold")
    flagged = np.asarray(run.anomaly, dtype=bool)
    codes = np.asarray(getattr(run, "reason", np.zeros(0)), dtype=np.intp)
    if flagged.any() and codes.shape == flagged.shape:
        mark_reasons(ax, t, score, flagged, reason_names(codes).tolist(), run.top_sensors, size=6)
    elif flagged.any():
        ax.scatter(
            t[flagged],
            score[flagged],
            s=4,
            color=_ALERT_COLOUR,
            zorder=3,
            label="in alert",
        )
    if score.size and not positive:
        # Keep a few extreme frames from flattening everything else.
        lo, hi = np.quantile(score, [0.001, 0.995])
        pad = 0.1 * (hi - lo or 1.0)
        ax.set_ylim(min(lo, run.threshold) - pad, max(hi, run.threshold) + pad)
    if positive:
        ax.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel("anomaly score")
    c = run.counts
    rates = c.defined()
    f1 = format_rate(rates["f1"], ".2f")
    mar = format_rate(rates["mar"], ".1f") + ("" if rates["mar"] is None else " %")
    ax.set_title(
        f"{run.name}  ({run.detector})   F1 {f1}   FAR {c.far:.1f} %   "
        f"MAR {mar}   faults caught {c.events_detected}/{c.events}   "
        f"false alarms {c.false_alarm_events}",
        loc="left",
        fontsize=10,
    )
    ax.legend(loc="upper left", fontsize=8, framealpha=0.8, ncol=3)
    ax.tick_params(labelbottom=False)
    ax.grid(alpha=0.2)
    for row, (flags, colour) in enumerate(
        ((run.labels, _LABEL_COLOUR), (run.anomaly, _ALERT_COLOUR))
    ):
        for a, b in segments(flags):
            strip.axvspan(
                t[a], t[b - 1], ymin=row / 2 + 0.08, ymax=(row + 1) / 2 - 0.08, color=colour
            )
    strip.set_yticks([0.25, 0.75], ["labelled", "alerts"], fontsize=8)
    strip.set_ylim(0, 1)
    strip.grid(axis="x", alpha=0.2)
    strip.set_xlabel("time (UTC)")
    return fig


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _alert_rows(run: RunEvaluation) -> str:
    if not run.alerts:
        return "<p class='muted'>No alerts in the test part.</p>"
    rows = []
    for alert in run.alerts:
        info = alert.to_dict()
        sensors = ", ".join(
            f"{html.escape(s['sensor'])} <span class='muted'>{100 * s['share']:.0f}%</span>"
            for s in info["sensors"][:5]
        )
        kind = "fault" if alert.labelled else "<b class='fa'>false alarm</b>"
        duration = (alert.end_us - alert.start_us) / 1e6
        reason = html.escape(alert.reason or "-")
        if alert.reason_sensor:
            reason += f" <span class='muted'>({html.escape(alert.reason_sensor)})</span>"
        rows.append(
            f"<tr><td>{info['start']}</td><td>{duration:.0f} s</td><td>{kind}</td>"
            f"<td>{reason}</td><td>{alert.peak_score:.3g}</td><td>{sensors or '-'}</td></tr>"
        )
    return (
        "<table><tr><th>alert start</th><th>duration</th><th>touches</th><th>reason</th>"
        "<th>peak score</th><th>sensors that drove it (share)</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def render_report(evaluation: Evaluation, title: str = "LineGuard evaluation") -> str:
    """The whole report as one HTML string."""
    summary = evaluation.summary()
    delay = "-" if summary["median_delay_s"] is None else f"{summary['median_delay_s']:.0f} s"
    head = (
        f"<table><tr><th>runs</th><th>test rows</th><th>F1</th><th>FAR %</th><th>MAR %</th>"
        f"<th>NAB standard / low FP / low FN</th><th>faults caught</th><th>false alarms</th>"
        f"<th>median delay</th></tr><tr><td>{summary['runs']}</td>"
        f"<td>{summary['test_rows']}</td><td>{format_rate(summary['f1'], '.3f')}</td>"
        f"<td>{summary['far']:.1f}</td><td>{format_rate(summary['mar'], '.1f')}</td>"
        f"<td>{summary['nab_standard']} / {summary['nab_low_fp']} / {summary['nab_low_fn']}</td>"
        f"<td>{summary['events_detected']}/{summary['events']}</td>"
        f"<td>{summary['false_alarm_events']}</td>"
        f"<td>{delay}</td>"
        f"</tr></table>"
    )
    per_run = []
    for run in evaluation.runs:
        c = run.counts
        rates = c.defined()
        per_run.append(
            f"<tr><td><a href='#{html.escape(run.line)}'>{html.escape(run.name)}</a></td>"
            f"<td>{html.escape(run.detector)}</td><td>{format_rate(rates['f1'], '.3f')}</td>"
            f"<td>{c.far:.1f}</td><td>{format_rate(rates['mar'], '.1f')}</td>"
            f"<td>{c.events_detected}/{c.events}</td>"
            f"<td>{c.false_alarm_events}</td></tr>"
        )
    by_reason = "".join(
        f"<tr><td>{html.escape(reason)}</td><td>{row['alerts']}</td><td>{row['faults']}</td>"
        f"<td>{row['false_alarms']}</td></tr>"
        for reason, row in evaluation.by_reason().items()
    )
    sections = []
    for run in evaluation.runs:
        fig = run_figure(run)
        slow = run.calibration.get("slow_sensors") or []
        notes = (
            f"threshold {run.threshold:.4g} (target false-alarm rate "
            f"{run.calibration.get('target_far', '?')}, "
            f"{run.calibration.get('threshold_method', '?')} on "
            f"{run.calibration.get('n_holdout', '?')} held-back normal rows)"
        )
        if slow:
            notes += "; judged by dynamics, not level: " + ", ".join(html.escape(s) for s in slow)
        flat = run.calibration.get("flat_sensors") or []
        if flat:
            notes += "; one value in all training rows, step-checked only: " + ", ".join(
                html.escape(s) for s in flat
            )
        spread = run.calibration.get("holdout_score_quantiles") or {}
        if spread.get("0.5") and spread.get("0.9", 0.0) > 3 * spread["0.5"]:
            # See lineguard.detectors.calibration: a regime only the holdout saw.
            notes += (
                f". <b class='fa'>Check the training window:</b> held-back normal scores spread "
                f"widely (0.9 quantile {spread['0.9'] / spread['0.5']:.1f}x the median), so the "
                f"threshold may be set too high for this line"
            )
        sections.append(
            f"<section id='{html.escape(run.line)}'><h2>{html.escape(run.name)}</h2>"
            f"<p class='muted'>{notes}</p>"
            f"<img alt='score of {html.escape(run.name)}' src='data:image/png;base64,{_png(fig)}'>"
            f"{_alert_rows(run)}</section>"
        )
    skipped = "".join(
        f"<li>{html.escape(name)}: {html.escape(why)}</li>" for name, why in evaluation.skipped
    )
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1050px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.25em 0.7em; text-align: left; }}
th {{ background: #f4f4f4; }}
img {{ max-width: 100%; }}
.muted {{ color: #777; font-size: 0.9em; }}
.fa {{ color: {_ALERT_COLOUR}; }}
section {{ margin-top: 2.2em; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="muted">Made {made}. Metrics over the test rows of every run (after the training
rows), SKAB's definitions: pointwise confusion summed over runs; NAB with a 60 s window;
a fault is caught when an alert falls inside its labelled segment; a false alarm is an
alert that touches no labelled segment. Shaded: labelled faults. Marked: frames in alert
(debounced), as the stream worker raised them, by reason (the score, or the sensor check
that fired, with its sensor in the legend).</p>
{head}
<table><tr><th>run</th><th>detector</th><th>F1</th><th>FAR %</th><th>MAR %</th>
<th>faults caught</th><th>false alarms</th></tr>{"".join(per_run)}</table>
<p class="muted">Alert events by their dominant reason, and how many touched a labelled
fault (an evaluation statistic: it reads the labels).</p>
<table><tr><th>reason</th><th>alerts</th><th>faults</th><th>false alarms</th></tr>
{by_reason}</table>
{f"<p>Skipped:</p><ul>{skipped}</ul>" if skipped else ""}
{"".join(sections)}
</body></html>
"""


def write_report(
    evaluation: Evaluation, path: str | Path, title: str = "LineGuard evaluation"
) -> Path:
    """Write :func:`render_report` to ``path`` (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(evaluation, title), encoding="utf-8")
    return path
