"""Report plots (PNG + SVG under ``results/plots/``), drawn with matplotlib's object API.

Each figure is a ``matplotlib.figure.Figure`` on an Agg canvas: no pyplot, so no global figure
state and no display backend. Every plot has a title, units and a "lower/higher is better" mark;
colours follow the method, so a method looks the same in every plot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from robench.evaluation.base import ValueInfo
from robench.io import atomic_write
from robench.reporting.leaderboard import headline_metrics
from robench.reporting.tables import METHOD_ORDER, PIVOT_ID
from robench.runs import runs_root

_PALETTE = [
    "#4c72b0",
    "#dd8452",
    "#55a868",
    "#c44e52",
    "#8172b3",
    "#937860",
    "#da8bc3",
    "#8c8c8c",
    "#ccb974",
    "#64b5cd",
]


@dataclass(frozen=True)
class Plot:
    """A written plot: what it shows and where its PNG and SVG are."""

    name: str
    title: str
    png: Path
    svg: Path


def _arrow(info: ValueInfo) -> str:
    return f"{info.arrow} {info.better}"


def _colours(methods: pd.Series) -> list[str]:
    extra = sorted(set(methods) - set(METHOD_ORDER))
    order = [*METHOD_ORDER, *extra]
    return [_PALETTE[order.index(m) % len(_PALETTE)] for m in methods]


def _hatches(board: pd.DataFrame) -> list[str]:
    """A method run with non-default options is hatched, so it stands apart from the default."""
    return ["//" if opts else "" for opts in board["method_options"]]


def _labels(board: pd.DataFrame) -> list[str]:
    """Row labels: the method (and options), plus the setting when there are several."""
    if board["setting"].nunique() > 1:
        return [f"{r.label}\n{r.setting}" for r in board.itertuples()]
    return board["label"].tolist()


def _label_inches(labels: list[str]) -> float:
    """Roughly how wide the longest label line is at the tick font size."""
    return 0.075 * max(len(line) for label in labels for line in label.split("\n"))


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out_dir: Path, name: str, title: str) -> Plot:
    paths = {}
    for fmt in ("png", "svg"):
        paths[fmt] = out_dir / f"{name}.{fmt}"
        with atomic_write(paths[fmt], "wb") as f:
            fig.savefig(f, format=fmt, dpi=130)
    return Plot(name, title, paths["png"], paths["svg"])


def _ci_errors(board: pd.DataFrame, metric: str) -> np.ndarray:
    """(2, n) distances from the mean to the CI ends (NaN: no interval, no whisker drawn)."""
    mean = board[metric].to_numpy(float)
    return np.vstack(
        [mean - board[f"{metric}_ci_low"].to_numpy(float), board[f"{metric}_ci_high"] - mean]
    )


def bar_chart(board: pd.DataFrame, metric: str, out_dir: Path) -> Plot:
    """One metric across recipes: bars = mean over seeds, whiskers = 95 % CI, n = seeds.

    Horizontal bars, so that long labels (options, several settings) stay readable.
    """
    info = headline_metrics()[metric]
    rows = board[board[metric].notna()]
    labels = _labels(rows)
    lines = max(label.count("\n") + 1 for label in labels)
    fig = _figure(7.5 + _label_inches(labels), 0.42 * lines * len(rows) + 1.7)
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    mean = rows[metric].to_numpy(float)
    err = _ci_errors(rows, metric)
    colours, hatches = _colours(rows["method"]), _hatches(rows)
    ax.barh(y, mean, color=colours, hatch=hatches, edgecolor="white", height=0.65, zorder=2)
    ax.errorbar(mean, y, xerr=err, fmt="none", ecolor="black", capsize=4, lw=1.2, zorder=3)
    end = np.fmax(mean, mean + np.nan_to_num(err[1]))
    for yi, xi, m, n in zip(y, end, mean, rows["n_seeds"], strict=True):
        ax.annotate(
            f"{m:.2f}  (n={n})",
            (xi, yi),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    if metric.endswith("mce_vs_baseline"):
        ax.axvline(100, color="grey", ls="--", lw=1, zorder=1)
        ax.annotate(  # above the axes: inside, it would cross the value labels near 100
            "baseline = 100",
            xy=(100, 1),
            xycoords=("data", "axes fraction"),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7,
            color="grey",
        )
    ax.set_xlim(min(0.0, 1.22 * np.nanmin(mean)), max(np.nanmax(end) * 1.22, 1.0))
    ax.set_yticks(y, labels, fontsize=9)
    ax.invert_yaxis()
    methods = ", ".join(sorted(set(rows["ci_method"]) - {"none"})) or "none available"
    ax.set_xlabel(
        f"{info.title.split(' (')[0]} ({info.unit})\nwhiskers: 95 % CI ({methods}); n = seeds"
    )
    ax.set_title(f"{info.title}\n{_arrow(info)}", fontsize=11)
    ax.grid(axis="x", alpha=0.3, zorder=0)
    return _save(fig, out_dir, f"bar_{metric}", info.title)


def heatmap(table: pd.DataFrame, out_dir: Path) -> Plot:
    """Method x corruption error (%), each cell annotated; the last column is the mean."""
    columns = [c for c in table.columns if c not in PIVOT_ID]
    values = table[columns].to_numpy(float)
    labels = _labels(table)
    lines = max(label.count("\n") + 1 for label in labels)
    width = max(7.0, 0.62 * len(columns) + _label_inches(labels) + 2.0)
    fig = _figure(width, max(2.6, 0.4 * lines * len(table) + 2.2))
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="YlOrRd", aspect="auto", vmin=0, vmax=max(np.nanmax(values), 1))
    for (i, j), v in np.ndenumerate(values):
        r, g, b = to_rgb(image.cmap(image.norm(v)))
        ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
        text, ink = ("n/a", "grey") if np.isnan(v) else (f"{v:.0f}", ink)
        ax.text(j, i, text, ha="center", va="center", fontsize=7, color=ink)
    ax.set_xticks(
        range(len(columns)), [c.replace("_", " ") for c in columns], rotation=45, ha="right"
    )
    ax.set_yticks(range(len(table)), labels)
    ax.axvline(len(columns) - 1.5, color="white", lw=3)  # set the mean column apart
    fig.colorbar(image, ax=ax, label="error (%)", shrink=0.9)
    title = "Corruption error per corruption"
    ax.set_title(f"{title} (mean over severities and seeds)\n↓ lower is better", fontsize=11)
    return _save(fig, out_dir, "heatmap_corruption", title)


def severity_lines(table: pd.DataFrame, out_dir: Path) -> Plot:
    """Error (%) against severity, severity 0 = the clean test set, one line per recipe."""
    columns = [c for c in table.columns if c == "clean" or (c.startswith("s") and c[1:].isdigit())]
    xs = [0 if c == "clean" else int(c[1:]) for c in columns]
    fig = _figure(6.4, 4.2)
    ax = fig.add_subplot()
    styles = zip(_labels(table), _colours(table["method"]), _hatches(table), strict=True)
    for row, (label, colour, hatch) in zip(table.itertuples(), styles, strict=True):
        ax.plot(
            xs,
            [getattr(row, c) for c in columns],
            marker="o",
            label=label,
            color=colour,
            ls="--" if hatch else "-",
        )
    ax.set_xticks(xs, ["clean" if x == 0 else str(x) for x in xs])
    ax.set_xlabel("corruption severity (clean = uncorrupted test set)")
    ax.set_ylabel("error (%)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    title = "Error vs corruption severity (mean over corruptions and seeds)"
    ax.set_title(f"{title}\n↓ lower is better", fontsize=11)
    return _save(fig, out_dir, "error_vs_severity", title)


def pooled_reliability(runs: pd.DataFrame, results_dir: Path) -> pd.DataFrame | None:
    """One recipe's reliability table pooled over its seeds (count-weighted), or None."""
    tables = []
    for run_id in runs["run_id"]:
        path = runs_root(results_dir) / run_id / "tables" / "calibration_reliability.csv"
        if path.is_file():
            tables.append(pd.read_csv(path))
    if not tables:
        return None
    both = pd.concat(tables)
    both["conf_sum"] = both["mean_confidence"].fillna(0) * both["count"]
    both["acc_sum"] = both["accuracy"].fillna(0) * both["count"]
    pooled = both.groupby(["bin_lower", "bin_upper"], as_index=False)[
        ["count", "conf_sum", "acc_sum"]
    ].sum()
    with np.errstate(invalid="ignore"):
        pooled["mean_confidence"] = pooled["conf_sum"] / pooled["count"]
        pooled["accuracy"] = pooled["acc_sum"] / pooled["count"]
    return pooled


def reliability_diagrams(
    board: pd.DataFrame, runs: pd.DataFrame, results_dir: Path, out_dir: Path
) -> Plot | None:
    """Accuracy vs confidence per bin, one panel per recipe (seeds pooled); None without data."""
    panels = []
    for row, label in zip(board.itertuples(), _labels(board), strict=True):
        table = pooled_reliability(runs[runs["recipe"] == row.recipe], results_dir)
        if table is not None:
            panels.append((row, label, table))
    if not panels:
        return None
    ncols = min(len(panels), 3)
    nrows = -(-len(panels) // ncols)
    fig = _figure(3.3 * ncols, 3.3 * nrows + 0.5)
    for k, (row, label, table) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        full = table[table["count"] > 0]
        width = (full["bin_upper"] - full["bin_lower"]).to_numpy()
        left = full["bin_lower"].to_numpy()
        ax.bar(
            left,
            full["accuracy"],
            width=width,
            align="edge",
            color="#4c72b0",
            edgecolor="black",
            lw=0.5,
            label="accuracy",
        )
        gap = full["mean_confidence"] - full["accuracy"]
        ax.bar(
            left,
            gap,
            bottom=full["accuracy"],
            width=width,
            align="edge",
            color="#c44e52",
            alpha=0.45,
            hatch="//",
            edgecolor="#c44e52",
            lw=0,
            label="gap to confidence",
        )
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
        rms = getattr(row, "rms_calibration_error", np.nan)
        text = f"RMS cal. error {rms:.1f} %\n{int(table['count'].sum())} examples"
        ax.text(0.03, 0.97, text, transform=ax.transAxes, va="top", fontsize=8)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (max softmax)", ylabel="accuracy")
        ax.set_title(label, fontsize=9)
    title = "Reliability diagrams (clean test set, seeds pooled)"
    fig.suptitle(f"{title}\nbars on the diagonal = calibrated; red = over/under-confidence")
    fig.legend(*fig.axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=3)
    return _save(fig, out_dir, "reliability", title)


def summary(board: pd.DataFrame, out_dir: Path) -> Plot:
    """Every headline metric at a glance: one small bar panel per metric."""
    headline = headline_metrics()
    metrics = [m for m in headline if m in board and board[m].notna().any()]
    ncols = min(len(metrics), 4)
    nrows = -(-len(metrics) // ncols)
    labels = _labels(board)
    fig = _figure(3.4 * ncols, (0.32 * len(board) + 1.3) * nrows + 0.4)
    y = np.arange(len(board))
    for k, metric in enumerate(metrics):
        info = headline[metric]
        ax = fig.add_subplot(nrows, ncols, k + 1)
        colours, hatches = _colours(board["method"]), _hatches(board)
        ax.barh(y, board[metric], color=colours, hatch=hatches, edgecolor="white", zorder=2)
        ax.errorbar(
            board[metric],
            y,
            xerr=_ci_errors(board, metric),
            fmt="none",
            ecolor="black",
            capsize=3,
            lw=1,
            zorder=3,
        )
        ax.set_yticks(y, labels if k % ncols == 0 else [], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"{info.title.split(' (')[0]}\n({info.unit}, {_arrow(info)})", fontsize=9)
        ax.grid(axis="x", alpha=0.3, zorder=0)
        ax.tick_params(axis="x", labelsize=8)
    title = "Every metric at a glance (mean over seeds, whiskers = 95 % CI)"
    fig.suptitle(title, fontsize=11)
    return _save(fig, out_dir, "summary", title)


def make_plots(
    board: pd.DataFrame,
    by_corruption: pd.DataFrame,
    by_severity: pd.DataFrame,
    runs: pd.DataFrame,
    results_dir: Path,
    out_dir: Path,
) -> list[Plot]:
    """Every plot the data allows, written into ``out_dir`` (the runs read from
    ``results_dir``)."""
    metrics = [m for m in headline_metrics() if m in board and board[m].notna().any()]
    plots = [bar_chart(board, m, out_dir) for m in metrics]
    if plots:
        plots.append(summary(board, out_dir))
    if not by_corruption.empty:
        plots.append(heatmap(by_corruption, out_dir))
    if not by_severity.empty:
        plots.append(severity_lines(by_severity, out_dir))
    reliability = reliability_diagrams(board, runs, results_dir, out_dir)
    return plots + ([reliability] if reliability else [])
