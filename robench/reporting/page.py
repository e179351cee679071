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

from robench.evaluation.base import ValueInfo
from robench.io import write_text
from robench.reporting.leaderboard import BOOTSTRAP, T_SEEDS, headline_metrics

if TYPE_CHECKING:
    from robench.reporting.build import Report

CONVENTIONS = [
    "Leaderboard cells: mean ± std over seeds, and a 95 % confidence interval (in brackets in "
    "report.md, on hover in report.html; the best mean of a column is marked there, and a click "
    f"on a header sorts). The interval is a t-interval over seeds with two or more seeds "
    f"(`{T_SEEDS}`), otherwise a percentile bootstrap over the test "
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
    """A leaderboard column's header: its short name, unit and direction."""
    info = headline_metrics()[metric]
    return f"{info.column} ({info.unit}) {info.arrow}"


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
    """A section table for reading: rounded, without the columns the label already says
    (method, its options, the recipe hash; the setting when there is one)."""
    drop = ["recipe", "method", "method_options"]
    if "setting" in table and table["setting"].nunique() <= 1:
        drop.append("setting")
    out = table.drop(columns=drop, errors="ignore").astype(object)
    return out.map(lambda v: f"{v:.2f}" if isinstance(v, float) and v == v else v).fillna("")


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
        parts.append(f"### {plot.title}\n\n![{plot.title}](plots/{plot.png.name})")
    parts.append("## Files\n\n" + "\n".join(f"- `{p.name}`: {k}" for k, p in report.files.items()))
    return "\n\n".join(parts) + "\n"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1240px; padding: 0 1em;
       color: #222; }
.scroll { overflow-x: auto; margin: 0.5em 0 1.5em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; vertical-align: bottom; } th small { font-weight: normal; color: #555; }
td small { color: #666; } td:first-child, th:first-child { text-align: left; }
td.best { font-weight: bold; background: #e3f4e3; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 1em; }
figure { margin: 0; } figcaption { font-size: 0.85em; color: #444; }
img { max-width: 100%; border: 1px solid #eee; }
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


def _best_rows(board: pd.DataFrame, metric: str, info: ValueInfo) -> set[int]:
    """The rows (positions) holding the best mean of ``metric`` within each setting."""
    best: set[int] = set()
    for _, group in board.reset_index(drop=True).groupby("setting", sort=False):
        values = group[metric].dropna()
        if len(values) > 1:
            target = values.max() if info.higher_is_better else values.min()
            best |= set(values.index[values == target])
    return best


def leaderboard_html(board: pd.DataFrame) -> str:
    """The leaderboard as a compact, sortable HTML table: one column per headline metric with its
    short name, unit and direction; cells "mean ± std" (the 95 % interval on hover); the best
    mean of each column (per setting) marked."""
    infos = {m: info for m, info in headline_metrics().items() if m in board}
    several = board["setting"].nunique() > 1
    head = ["<th>method</th>"] + (["<th>setting</th>"] if several else []) + ["<th>seeds</th>"]
    for m, info in infos.items():
        tip = html.escape(f"{info.title} ({info.unit}); {info.better}. Column {m}")
        unit = html.escape(f"{info.unit} {info.arrow}")
        head.append(f"<th title='{tip}'>{html.escape(info.column)}<br><small>{unit}</small></th>")
    best = {m: _best_rows(board, m, info) for m, info in infos.items()}
    rows = []
    for i, (_, r) in enumerate(board.reset_index(drop=True).iterrows()):
        cells = [f"<td>{html.escape(str(r['label']))}</td>"]
        if several:
            cells.append(f"<td>{html.escape(str(r['setting']))}</td>")
        cells.append(f"<td data-value='{r['n_seeds']}'>{r['n_seeds']}</td>")
        for m in infos:
            mean, std = r[m], r[f"{m}_std"]
            if math.isnan(mean):
                cells.append("<td data-value=''></td>")
                continue
            text = f"{mean:.2f}" + ("" if math.isnan(std) else f"<small> ± {std:.2f}</small>")
            low, high = r[f"{m}_ci_low"], r[f"{m}_ci_high"]
            tip = "" if math.isnan(low) else f" title='95 % CI [{low:.2f}, {high:.2f}]'"
            mark = " class='best'" if i in best[m] else ""
            cells.append(f"<td data-value='{mean}'{mark}{tip}>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        "<div class='scroll'><table class='sortable'><thead><tr>"
        + "".join(head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div>"
    )


def page_html(report: Report) -> str:
    """The page, with every PNG embedded as a data URI; fits a 1280 px window (wide tables
    scroll inside their box), tables sort by a click on a header."""
    body = ["<h1>robench report</h1>", _inline_md(_header(report))]
    for heading, text, table in _sections(report):
        body += [f"<h2>{html.escape(heading)}</h2>", _inline_md(text)]
        if heading == "Leaderboard":
            body.append(leaderboard_html(report.leaderboard))
        elif table is not None:
            wide = table.to_html(index=False, border=0, na_rep="", classes="sortable")
            body.append(f"<div class='scroll'>{wide}</div>")
    if report.plots:
        body.append("<h2>Plots</h2><div class='plots'>")
        for plot in report.plots:
            title = html.escape(plot.title)
            body.append(
                f"<figure><img alt='{title}' src='{_data_uri(plot.png)}'><figcaption>{title} "
                f"(<a href='plots/{plot.svg.name}'>SVG</a>)</figcaption></figure>"
            )
        body.append("</div>")
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>robench report</title>"
        f"<style>{_CSS}</style></head><body>{''.join(body)}<script>{_SORT_JS}</script>"
        "</body></html>\n"
    )


#: click a header to sort its table by that column (numbers by value, text alphabetically)
_SORT_JS = """
document.querySelectorAll('table.sortable th').forEach((th, col) => {
  th.style.cursor = 'pointer';
  th.addEventListener('click', () => {
    const body = th.closest('table').tBodies[0];
    const key = tr => { const td = tr.cells[col];
      const v = td.dataset.value ?? td.textContent; const n = parseFloat(v);
      return isNaN(n) ? v : n; };
    const up = th.dataset.dir !== 'up'; th.dataset.dir = up ? 'up' : 'down';
    [...body.rows].sort((a, b) => { const x = key(a), y = key(b);
      return (x > y ? 1 : x < y ? -1 : 0) * (up ? 1 : -1); })
      .forEach(tr => body.appendChild(tr));
  });
});
"""


def write_pages(report: Report, out_dir: Path) -> tuple[Path, Path]:
    """Write report.md and the self-contained report.html into ``out_dir`` (beside the
    leaderboard, whose ``plots/`` they link)."""
    md, page = out_dir / "report.md", out_dir / "report.html"
    write_text(md, markdown(report))
    write_text(page, page_html(report))
    return md, page
