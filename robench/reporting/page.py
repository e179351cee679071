"""``results/report.md`` and ``results/report.html``: the tables and plots on one page.

The HTML embeds its PNGs as base64, so the file opens in a browser without a server and can be
mailed as one attachment; the Markdown references the PNGs relative to itself.
"""

from __future__ import annotations

import base64
import html
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from robench.io import write_text
from robench.reporting.leaderboard import BOOTSTRAP, T_SEEDS, headline_metrics

if TYPE_CHECKING:
    from robench.reporting.build import Report

CONVENTIONS = [
    "Cells: mean ± std over seeds [95 % confidence interval]. The interval is a t-interval over "
    f"seeds with two or more seeds (`{T_SEEDS}`), otherwise a percentile bootstrap over the test "
    f"examples of the one run (`{BOOTSTRAP}`; clean, corruption, C-Bar and PGD error only); the "
    "`ci_method` column of leaderboard.csv says which.",
    "Corruption error: the unweighted mean error over corruptions x severities (the CIFAR "
    "convention of AugMix/PixMix/IPMix, no normalisation).",
    "mCE vs baseline: per corruption, the sum over severities of the error divided by the same "
    "sum for the `baseline` run of the same recipe and seed, averaged over corruptions (the "
    "ImageNet-C formula with that run in AlexNet's place; 100 = as robust as the baseline). "
    "Relative mCE subtracts each run's clean error first.",
    "RMS calibration error: on the clean test set, adaptive bins of 100 examples.",
]


def _cell(mean: float, std: float, low: float, high: float, ci: bool) -> str:
    if math.isnan(mean):
        return ""
    text = f"{mean:.2f}" + ("" if math.isnan(std) else f" ± {std:.2f}")
    if ci and not math.isnan(low):
        text += f" [{low:.2f}, {high:.2f}]"
    return text


def column_title(metric: str) -> str:
    info = headline_metrics()[metric]
    return f"{metric} ({info.unit}) {'↑' if info.higher_is_better else '↓'}"


def display_table(board: pd.DataFrame, *, ci: bool = True) -> pd.DataFrame:
    """The leaderboard as text cells: recipe, seeds, then ``mean ± std [CI]`` per metric."""
    ident = ["label", "setting"] if board["setting"].nunique() > 1 else ["label"]
    out = board[ident].rename(columns={"label": "method"}).copy()
    out["seeds"] = board["n_seeds"]
    for m in (m for m in headline_metrics() if m in board):
        out[column_title(m)] = [
            _cell(r[m], r[f"{m}_std"], r[f"{m}_ci_low"], r[f"{m}_ci_high"], ci)
            for _, r in board.iterrows()
        ]
    return out


def _rounded(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=["recipe"], errors="ignore").round(2).astype(object).fillna("")


def markdown_table(table: pd.DataFrame) -> str:
    def esc(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(c) for c in table.columns) + " |"]
    lines.append("|" + "---|" * len(table.columns))
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in table.to_numpy()]
    return "\n".join(lines)


def _sections(report: Report) -> list[tuple[str, str, pd.DataFrame | None]]:
    """(heading, text, table) in page order; the plots follow."""
    board = report.leaderboard
    recipes = f"{len(board)} recipe{'s' * (len(board) != 1)}"
    out: list[tuple[str, str, pd.DataFrame | None]] = [
        ("Leaderboard", f"{len(report.runs)} runs of {recipes}.", display_table(board)),
        ("Conventions", "\n".join(f"- {c}" for c in CONVENTIONS), None),
    ]
    if not report.by_corruption.empty:
        text = "Error (%) per corruption, mean over severities and seeds; lower is better."
        out.append(("Per corruption", text, _rounded(report.by_corruption)))
    if not report.by_severity.empty:
        text = "Error (%) per severity, mean over corruptions and seeds; clean = no corruption."
        out.append(("Per severity", text, _rounded(report.by_severity)))
    if report.matching is not None:
        text = "Published numbers for the same method, model, data set, epochs and options."
        same = _rounded(report.matching) if len(report.matching) else None
        out.append(("Published numbers, same recipe", text if same is not None else "None.", same))
    if report.closest is not None and len(report.closest):
        text = (
            "**Not the same recipe** (see `differs_in`): these published numbers come from other "
            "data (e.g. official CIFAR-10, not the JPEG copy), models or schedules, so the gap is "
            "context, not a reproduction check."
        )
        out.append(("Closest published numbers", text, _rounded(report.closest)))
    return out


def _header(report: Report) -> str:
    when = datetime.now(UTC).isoformat(timespec="seconds")
    return f"Generated {when} from `{report.results_dir / 'runs'}`."


def markdown(report: Report) -> str:
    parts = ["# robench report", _header(report)]
    for heading, text, table in _sections(report):
        parts += [f"## {heading}", text] + ([markdown_table(table)] if table is not None else [])
    parts.append("## Plots")
    for plot in report.plots:
        png, svg = f"plots/{plot.png.name}", f"plots/{plot.svg.name}"
        parts.append(f"### {plot.title}\n\n![{plot.title}]({png}) ([SVG]({svg}))")
    parts.append("## Files\n\n" + "\n".join(f"- `{p.name}`: {k}" for k, p in report.files.items()))
    return "\n\n".join(parts) + "\n"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1300px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin-bottom: 1.5em; }
code { background: #f4f4f4; padding: 0 3px; }
"""


def _inline_md(text: str) -> str:
    """The little Markdown the section texts use (``code``, **bold**, list items) as HTML."""
    out = html.escape(text)
    for mark, tag in (("**", "strong"), ("`", "code")):
        pieces = out.split(mark)
        out = "".join(p if i % 2 == 0 else f"<{tag}>{p}</{tag}>" for i, p in enumerate(pieces))
    lines = out.split("\n")
    if all(line.startswith("- ") for line in lines):
        return "<ul>" + "".join(f"<li>{line[2:]}</li>" for line in lines) + "</ul>"
    return f"<p>{out}</p>"


def _data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()


def page_html(report: Report) -> str:
    """The page, with every PNG embedded as a data URI."""
    body = ["<h1>robench report</h1>", _inline_md(_header(report))]
    for heading, text, table in _sections(report):
        body += [f"<h2>{html.escape(heading)}</h2>", _inline_md(text)]
        if table is not None:
            body.append(table.to_html(index=False, border=0, na_rep=""))
    body.append("<h2>Plots</h2>")
    for plot in report.plots:
        svg = f"plots/{plot.svg.name}"
        body.append(
            f"<h3>{html.escape(plot.title)}</h3><img alt='{html.escape(plot.title)}' "
            f"src='{_data_uri(plot.png)}'><br><a href='{svg}'>SVG</a>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>robench report</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )


def write_pages(report: Report, out_dir: Path) -> tuple[Path, Path]:
    """Write report.md and the self-contained report.html into ``out_dir`` (beside the
    leaderboard, whose ``plots/`` they link)."""
    md, page = out_dir / "report.md", out_dir / "report.html"
    write_text(md, markdown(report))
    write_text(page, page_html(report))
    return md, page
