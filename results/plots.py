"""PNG figures of a report (results.report.build_report): score per turn, the signal measures per
turn (gold answer accuracy and NLL, agreement with full attention), score vs budget, kept KV vs
score. matplotlib is imported only inside these functions, on the Agg backend, so no display is
needed and reading a run never loads it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from results.identity import PointIdentity, display_names


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _subplots(plt, modes: list[str], title: str):
    fig, axes = plt.subplots(1, len(modes), figsize=(6.2 * len(modes), 4.6), squeeze=False, sharey=True)
    fig.suptitle(title, fontsize=13)
    for ax, mode in zip(axes[0], modes):
        ax.set_title(mode)
        ax.grid(True, alpha=0.3)
    return fig, axes[0]


def _ylim(ax, values) -> None:
    """Scores from 0; the top follows the data (tiny models score near 0), never past 100."""
    top = min(105, max(10, max([v for v in values if v is not None] or [0]) * 1.15 + 2))
    ax.set_ylim(-0.03 * top, top)  # a little below 0, so markers at 0 are not cut in half


def _finish(fig, axes, path: Path) -> Path:
    handles, labels = axes[0].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    for ax in axes[1:]:  # methods missing from the first mode still get a legend entry
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    if seen:
        fig.legend(seen.values(), seen.keys(), loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def score_per_turn(report: dict[str, Any], path: Path) -> Path:
    """SCBench's per-turn figure: one line per method, one panel per mode."""
    plt = _pyplot()
    fig, axes = _subplots(plt, report["modes"], f"Score per turn ({report['scoring']} scoring)")
    styles = _styles(report)
    for ax, mode in zip(axes, report["modes"]):
        lines: dict[str, list] = defaultdict(list)
        for row in report["turns"]:
            if row["mode"] == mode and row["score"] is not None:
                lines[row["label"]].append((row["turn"], 100 * row["score"]))
        for name, points in lines.items():
            xs, ys = zip(*points)
            ax.plot(xs, ys, label=name, **styles[name])
        turns = sorted({r["turn"] for r in report["turns"]})
        ax.set_xticks(turns)
        ax.set_xlabel("turn")
        _ylim(ax, [100 * (r["score"] or 0) for r in report["turns"]])
    axes[0].set_ylabel("score (x100, mean over tasks)")
    fig_path = _finish(fig, axes, path)
    plt.close(fig)
    return fig_path


# The per-turn measures of `signal_per_turn`: report field, axis label, scale, whether the axis is 0-100.
SIGNAL_PANELS = (
    ("gold_token_acc", "gold acc (% of gold tokens ranked first)", 100.0, True),
    ("gold_nll", "gold NLL (nats per token, lower is better)", 1.0, False),
    ("agree_f1", "agreement with full attention (word F1 %)", 100.0, True),
)


def signal_per_turn(report: dict[str, Any], path: Path) -> Path | None:
    """One row of panels per measure that has data (gold answer accuracy, its NLL, agreement with
    full attention), one column per mode, one line per method. None when no record has them."""
    panels = [p for p in SIGNAL_PANELS if any(r[p[0]] is not None for r in report["turns"])]
    if not panels:
        return None
    plt = _pyplot()
    modes, styles = report["modes"], _styles(report)
    fig, grid = plt.subplots(len(panels), len(modes), figsize=(6.2 * len(modes), 3.4 * len(panels)),
                             squeeze=False, sharex=True)
    fig.suptitle("What each method kept, turn by turn", fontsize=13)
    turns = sorted({r["turn"] for r in report["turns"]})
    for row, (field, label, scale, percent) in zip(grid, panels):
        values = [scale * r[field] for r in report["turns"] if r[field] is not None]
        for ax, mode in zip(row, modes):
            lines: dict[str, list] = defaultdict(list)
            for r in report["turns"]:
                if r["mode"] == mode and r[field] is not None:
                    lines[r["label"]].append((r["turn"], scale * r[field]))
            for name, points in lines.items():
                xs, ys = zip(*points)
                ax.plot(xs, ys, label=name, **styles[name])
            ax.grid(True, alpha=0.3)
            ax.set_xticks(turns)
            if percent:
                ax.set_ylim(-3, 105)
            else:
                ax.set_ylim(0, max(values) * 1.1 + 0.1)
        row[0].set_ylabel(label, fontsize=9)
    for ax, mode in zip(grid[0], modes):
        ax.set_title(mode)
    for ax in grid[-1]:
        ax.set_xlabel("turn")
    fig_path = _finish(fig, list(grid[0]), path)
    plt.close(fig)
    return fig_path


def _styles(report: dict[str, Any]) -> dict[str, dict]:
    """One colour per method (shared by its budgets) and one marker per budget, the same in every figure."""
    from matplotlib import colormaps

    methods = list(dict.fromkeys(m["method"] for m in report["methods"]))
    colors = colormaps["tab10" if len(methods) <= 10 else "tab20"].colors
    budgets = sorted({m["budget"] for m in report["methods"] if m["budget"] is not None})
    markers = "osD^vP*Xh<>"
    styles = {}
    for m in report["methods"]:
        marker = "o" if m["budget"] is None else markers[budgets.index(m["budget"]) % len(markers)]
        styles[m["label"]] = {"color": colors[methods.index(m["method"]) % len(colors)], "marker": marker}
    return styles


def _avg(report: dict[str, Any]) -> dict[tuple, float]:
    return {(r["label"], r["mode"]): 100 * r["avg"] for r in report["categories"] if r["avg"] is not None}


def _without_budget(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: _without_budget(v) if isinstance(v, dict) else v for k, v in settings.items() if k != "budget"}


def budget_curves(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The points of each method that differ in their budget alone, by curve name: the method, plus
    its other settings where the method ran with several ("snapkv (window=16)")."""
    families = {m["label"]: PointIdentity.make(m["method"], _without_budget(m["settings"]), None)
                for m in report["methods"] if m["budget"] is not None}
    names = display_names(families.values())
    curves: dict[str, list] = defaultdict(list)
    for m in report["methods"]:
        if m["label"] in families:
            curves[names[families[m["label"]]]].append(m)
    return curves


def score_vs_budget(report: dict[str, Any], path: Path) -> Path | None:
    """Avg score against the budget, one curve per method (and its other settings); methods without
    a budget are dashed reference lines. None when no method ran at more than one budget."""
    budgets = budget_curves(report)
    swept = {method: ms for method, ms in budgets.items() if len(ms) > 1}
    if not swept:
        return None
    plt = _pyplot()
    avg, styles = _avg(report), _styles(report)
    fig, axes = _subplots(plt, report["modes"], f"Score vs KV budget ({report['scoring']} scoring)")
    for ax, mode in zip(axes, report["modes"]):
        for method, ms in swept.items():
            points = [(m["budget"], avg[(m["label"], mode)]) for m in ms if (m["label"], mode) in avg]
            if points:
                xs, ys = zip(*sorted(points))
                ax.plot(xs, ys, label=method, color=styles[ms[0]["label"]]["color"], marker="o")
        for m in report["methods"]:
            if m["budget"] is None and (m["label"], mode) in avg:
                ax.axhline(avg[(m["label"], mode)], linestyle="--", linewidth=1.2,
                           color=styles[m["label"]]["color"], label=f"{m['label']} (no budget)")
        ax.set_xscale("log", base=2)
        ticks = sorted({m["budget"] for ms in swept.values() for m in ms})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel("KV budget (tokens, log scale)")
        _ylim(ax, list(avg.values()))
    axes[0].set_ylabel("Avg score (x100, mean of categories)")
    fig_path = _finish(fig, axes, path)
    plt.close(fig)
    return fig_path


def kept_vs_score(report: dict[str, Any], path: Path) -> tuple[Path | None, list[str]]:
    """Mean kept KV against Avg score, one point per method / budget. Full attention keeps all of
    its KV by definition, so it sits at 100% when the server did not measure it. Returns the path
    (None when no point has both values) and the labels left out for lack of kept-KV data."""
    avg, styles = _avg(report), _styles(report)
    points, missing = [], []
    for r in report["categories"]:
        kept = 1.0 if r["kept_kv"] is None and r["method"] == "full" else r["kept_kv"]
        if kept is None:
            missing.append(r["label"])
        elif (r["label"], r["mode"]) in avg:
            points.append((r, 100 * kept, avg[(r["label"], r["mode"])]))
    if not points:
        return None, sorted(set(missing))
    plt = _pyplot()
    curve_of = {m["label"]: name for name, ms in budget_curves(report).items() for m in ms}
    fig, axes = _subplots(plt, report["modes"], f"Kept KV vs score ({report['scoring']} scoring)")
    for ax, mode in zip(axes, report["modes"]):
        here = [p for p in points if p[0]["mode"] == mode]
        at: dict[tuple, list[str]] = defaultdict(list)  # methods on the same spot share one label
        for r, x, y in here:
            ax.scatter([x], [y], s=60, label=r["label"], **styles[r["label"]], edgecolors="black", linewidths=0.5)
            at[(round(x), round(y, 1))].append(r["label"])
        for (x, y), names in at.items():
            right = x > 70  # labels near 100% go left of the point, inside the panel
            ax.annotate("\n".join(names), (x, y), textcoords="offset points", xytext=(-6 if right else 6, 4),
                        ha="right" if right else "left", va="bottom", fontsize=8)
        # A method's budgets, joined in order of kept KV: its trade-off curve.
        curves: dict[str, list] = defaultdict(list)
        for r, x, y in here:
            if r["label"] in curve_of:
                curves[curve_of[r["label"]]].append((x, y, r["label"]))
        for method, pts in curves.items():
            if len(pts) > 1:
                xs, ys, names = zip(*sorted(pts))
                ax.plot(xs, ys, color=styles[names[0]]["color"], alpha=0.4, linewidth=1, zorder=0)
        ax.set_xlim(0, 105)
        ax.set_xlabel("kept KV (% of the request's KV, mean over turns)")
        _ylim(ax, [p[2] for p in points])
    axes[0].set_ylabel("Avg score (x100, mean of categories)")
    fig_path = _finish(fig, axes, path)
    plt.close(fig)
    return fig_path, sorted(set(missing))


def write_plots(report: dict[str, Any], out: Path, note: Callable[[str], None] = print) -> list[Path]:
    """Writes the figures into `out`; `note` hears why a figure was skipped. Returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    if not report["turns"]:
        note("no scored records: no plots written")
        return []
    written = [score_per_turn(report, out / "score_per_turn.png")]
    signal_plot = signal_per_turn(report, out / "signal_per_turn.png")
    if signal_plot is None:
        note("signal_per_turn.png skipped: no record has a gold likelihood or a full-attention point to agree with")
    else:
        written.append(signal_plot)
    budget_plot = score_vs_budget(report, out / "score_vs_budget.png")
    if budget_plot is None:
        note("score_vs_budget.png skipped: no method ran at more than one budget (bench --budgets 512,1024,...)")
    else:
        written.append(budget_plot)
    kept_plot, missing = kept_vs_score(report, out / "kept_vs_score.png")
    if missing:
        note(f"kept_vs_score.png: no kept-KV data for {', '.join(missing)} (left out)")
    if kept_plot is not None:
        written.append(kept_plot)
    return written
