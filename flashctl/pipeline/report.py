"""Eval reports: Markdown and HTML for one result, and side-by-side comparisons of several.

:func:`write_report` writes ``report.md`` and ``report.html`` (self-contained: inline CSS, contact
sheets and plots embedded as PNG data), ``samples/`` (an mp4 and a contact sheet per sample, when
the result still holds its rendered videos) and ``per_frame.png`` (per-frame curves, drawn with
matplotlib, the optional extra ``flashctl[report]``; without it the reports say so).
:func:`compare` lines several results up metric by metric and marks the best value according to
each key's direction; :func:`write_comparison` renders that as ``comparison.md`` / ``.html``.
Every file is written atomically.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from pydantic import BaseModel, ConfigDict, ValidationError

from ..directions import ARROWS, LEGEND, Direction, best
from ..errors import MetricsFileError
from ..files import atomic_path, atomic_write
from ..progress import NullReporter, Reporter
from ..validation import render_validation_error
from .evaluate import METRICS_FILE, EvalResult

REPORT_MD, REPORT_HTML, PLOT_FILE, SAMPLES_DIR = "report.md", "report.html", "per_frame.png", "samples"
COMPARISON_MD, COMPARISON_HTML = "comparison.md", "comparison.html"
NO_MATPLOTLIB = "per-frame plots need matplotlib: pip install 'flashctl[report]'"
# series key, dashed companion from the real clip, title, y label, index of the first value's frame
PANELS = (
    ("psnr_reference", None, "Fidelity to the reference image", "PSNR vs reference (dB, max 100)", 0),
    ("psnr_target", None, "Agreement with the real clip", "PSNR vs real frame t (dB, max 100)", 0),
    ("change", "target_change", "Frame-to-frame change", "mean |frame t − frame t−1| (0–1)", 1),
)
CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #ccc;padding:.25rem .6rem}
th{background:#f4f4f4;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.best{background:#d7f0d7;font-weight:bold}.dir{text-align:center;color:#555}
figure{margin:1rem 0}figcaption{color:#555;font-size:.9rem}
img.sheet{width:min(100%,960px);image-rendering:pixelated}img.plot{max-width:100%}
video{image-rendering:pixelated;background:#000}.wide{overflow-x:auto}.note{color:#8a5a00}code{font-size:.9em}
"""


class _Sample(BaseModel):
    model_config = ConfigDict(strict=True)
    reference: str
    seed: int | None = None
    scores: dict[str, float | None] = {}
    series: dict[str, list[float | None]] = {}


class _Record(BaseModel):
    """What a report needs from metrics.json; other keys (config, provenance) are ignored."""

    model_config = ConfigDict(strict=True)
    action: str
    summary: dict[str, float | None]
    samples: list[_Sample] = []
    higher_is_better: dict[str, Direction] = {}


def load_result(path: Path | str) -> EvalResult:
    """Read a metrics.json written by ``flashctl eval`` (or the folder holding one) back into an EvalResult."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    rerun = "re-run `flashctl eval ACTION` to write it again"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MetricsFileError(f"{path}: no such file", hint="pass a metrics.json written by `flashctl eval`, "
                               "or the folder that holds it") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MetricsFileError(f"{path}: cannot read it ({exc})", hint="check the file's permissions") from None
    except json.JSONDecodeError as exc:
        raise MetricsFileError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
                               hint=rerun) from None
    try:
        record = _Record.model_validate(data)
    except ValidationError as exc:
        raise MetricsFileError(*render_validation_error(
            exc, str(path), _Record, hint=f"it is not a metrics.json from `flashctl eval`; {rerun}")) from None
    summary = {k: v for k, v in record.summary.items() if v is not None}
    return EvalResult(record.action, [s.model_dump() for s in record.samples], summary, path,
                      record.higher_is_better)


def format_value(value: float | None) -> str:
    """Four significant digits; missing or non-finite values are a dash."""
    return "–" if value is None or not math.isfinite(value) else f"{value:.4g}"


def _keys(result: EvalResult) -> list[str]:
    """Every metric key: the summary's order first, then keys only some samples have."""
    keys = dict.fromkeys(result.summary)
    for row in result.per_sample:
        keys.update(dict.fromkeys(row.get("scores", {})))
    return list(keys)


def _sample_name(index: int, label: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(label).stem).strip("-")[:40] or "sample"
    return f"{index:02d}_{slug}"


def _short_label(label: str) -> str:
    return Path(label).name or label


def _png(image: Any) -> bytes:
    """``(H, W, 3)`` uint8 -> PNG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _text(text: str) -> str:
    """Escape text content (attribute values use html.escape with quotes)."""
    return html.escape(text, quote=False)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _write_samples(result: EvalResult, out: Path, reporter: Reporter) -> Path:
    """samples/<name>.mp4 and <name>_sheet.png for every rendered video; replaces the folder as one unit."""
    from ..video import contact_sheet, write_mp4

    reporter.start("report samples", total=len(result.videos))
    with atomic_path(out / SAMPLES_DIR) as tmp:
        tmp.mkdir()
        for i, (row, frames) in enumerate(zip(result.per_sample, result.videos)):
            name = _sample_name(i, row["reference"])
            write_mp4(tmp / f"{name}.mp4", frames, result.fps)
            atomic_write(tmp / f"{name}_sheet.png", _png(contact_sheet(frames)))
            reporter.advance(1)
    reporter.finish()
    return out / SAMPLES_DIR


def _plot(result: EvalResult) -> bytes:
    """A PNG with one panel per available series, one line per sample (dashed: the real clip)."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    series = [row.get("series", {}) for row in result.per_sample]
    panels = [p for p in PANELS if any(s.get(p[0]) for s in series)]
    figure = Figure(figsize=(4.6 * len(panels), 4.2), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, dashed, title, ylabel, first) in zip(axes, panels):
        for i, curves in enumerate(series):
            for name, style in ((key, "-"), (dashed, "--")):
                values = curves.get(name) if name else None
                if values:
                    frames = range(first, first + len(values))
                    ax.plot(frames, [math.nan if v is None else v for v in values], style, color=f"C{i % 10}",
                            marker="o", markersize=3, linewidth=1.4)
        if dashed and any(s.get(dashed) for s in series):
            ax.legend([Line2D([], [], color="0.3"), Line2D([], [], color="0.3", linestyle="--")],
                      ["generated", "real clip"], fontsize="small")
        ax.set(title=title, xlabel="frame", ylabel=ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    labels = [_short_label(row["reference"]) for row in result.per_sample]
    handles = [Line2D([], [], color=f"C{i % 10}", marker="o", markersize=3) for i in range(len(labels))]
    figure.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 6), fontsize="small",
                  title="sample")
    figure.suptitle(f"{result.action}: per-frame curves")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _plot_or_reason(result: EvalResult) -> tuple[bytes | None, str]:
    if not any(row.get("series", {}).get(panel[0]) for row in result.per_sample for panel in PANELS):
        return None, "no per-frame series in this metrics.json (re-run `flashctl eval` to get plots)"
    try:
        import matplotlib  # noqa: F401  (the optional extra)
    except ImportError:
        return None, NO_MATPLOTLIB
    return _plot(result), ""


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], align: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[tuple[str, str]]]) -> str:
    """``rows`` of (text, css class) cells; all text is escaped here."""
    head = "".join(f"<th>{_text(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="{cls}">{_text(text)}</td>' if cls else f"<td>{_text(text)}</td>"
                                    for text, cls in row) + "</tr>" for row in rows)
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _html_page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_text(title)}</title>'
            f"<style>{CSS}</style></head><body>\n<h1>{_text(title)}</h1>\n{body}\n</body></html>\n")


def _markdown_report(result: EvalResult, keys: list[str], samples: list[tuple[str, Path | None, Path | None]],
                     plot: Path | None, reason: str) -> str:
    arrows = {k: ARROWS[result.higher_is_better.get(k)] for k in keys}
    summary = _md_table(["metric", "better", "mean"], ["---", ":-:", "---:"],
                        [[_md_cell(k), arrows[k], format_value(result.summary.get(k))] for k in keys])
    per_sample = _md_table(["sample"] + [_md_cell(f"{k} {arrows[k]}".strip()) for k in keys], ["---"] + ["---:"] * len(keys),
                           [[_md_cell(row["reference"])] + [format_value(row["scores"].get(k)) for k in keys]
                            for row in result.per_sample])
    parts = [f"# flashctl eval: {result.action}", f"{len(result.per_sample)} samples, from `{result.path}`. {LEGEND}",
             "## Summary", summary, "## Per sample", per_sample, "## Samples"]
    for label, video, sheet in samples:
        parts.append(f"**{_md_cell(label)}**" + (f" ([mp4]({video.as_posix()}))" if video else ""))
        if sheet:
            parts.append(f"![{_md_cell(label)}]({sheet.as_posix()})")
    if not any(video or sheet for _, video, sheet in samples):
        parts.append("_No rendered samples in this folder._")
    parts += ["## Per-frame curves", f"![per-frame curves]({plot.as_posix()})" if plot else f"_{reason}._"]
    return "\n\n".join(parts) + "\n"


def _html_report(result: EvalResult, keys: list[str], samples: list[tuple[str, Path | None, Path | None]],
                 out: Path, plot_png: bytes | None, reason: str) -> str:
    arrows = {k: ARROWS[result.higher_is_better.get(k)] for k in keys}
    summary = _html_table(["metric", "better", "mean"],
                          [[(k, ""), (arrows[k], "dir"), (format_value(result.summary.get(k)), "num")] for k in keys])
    per_sample = _html_table(["sample"] + [f"{k} {arrows[k]}".strip() for k in keys],
                             [[(row["reference"], "")] + [(format_value(row["scores"].get(k)), "num") for k in keys]
                              for row in result.per_sample])
    figures = []
    for label, video, sheet in samples:
        media = ""
        if video:
            media += (f'<video src="{html.escape(video.as_posix())}" controls loop muted width="256"></video> '
                      f'<a href="{html.escape(video.as_posix())}">mp4</a>')
        if sheet:
            media += (f'<br><img class="sheet" alt="{html.escape(label)}" '
                      f'src="{_data_uri((out / sheet).read_bytes())}">')
        figures.append(f"<figure>{media}<figcaption>{_text(label)}</figcaption></figure>")
    if not any(video or sheet for _, video, sheet in samples):
        figures.append('<p class="note">No rendered samples in this folder.</p>')
    plot = (f'<img class="plot" alt="per-frame curves" src="{_data_uri(plot_png)}">' if plot_png
            else f'<p class="note">{_text(reason)}.</p>')
    body = (f"<p>{len(result.per_sample)} samples, from <code>{_text(str(result.path))}</code>. "
            f"{_text(LEGEND)}</p>\n<h2>Summary</h2>{summary}\n<h2>Per sample</h2>{per_sample}\n"
            f"<h2>Samples</h2>{''.join(figures)}\n<h2>Per-frame curves</h2>{plot}")
    return _html_page(f"flashctl eval: {result.action}", body)


def write_report(result: EvalResult, out_dir: Path | str, *,
                 reporter: Reporter = NullReporter()) -> dict[str, Path]:
    """Write report.md and report.html (plus samples/ and per_frame.png when possible) into ``out_dir``.

    Returns the written files by kind: ``markdown``, ``html``, and ``samples`` / ``plot`` when written.
    A result loaded from metrics.json has no videos: the reports then show the sheets and mp4s an
    earlier run left in ``out_dir/samples``, if any.
    """
    out = Path(out_dir)
    written: dict[str, Path] = {}
    if result.videos:
        written["samples"] = _write_samples(result, out, reporter)
    samples = []
    for i, row in enumerate(result.per_sample):
        name = _sample_name(i, row["reference"])
        video, sheet = Path(SAMPLES_DIR, f"{name}.mp4"), Path(SAMPLES_DIR, f"{name}_sheet.png")
        samples.append((row["reference"], video if (out / video).is_file() else None,
                        sheet if (out / sheet).is_file() else None))
    plot_png, reason = _plot_or_reason(result)
    if plot_png:
        written["plot"] = atomic_write(out / PLOT_FILE, plot_png)
    elif reason == NO_MATPLOTLIB:
        reporter.note(f"eval report: {NO_MATPLOTLIB}", level="warning")
    keys = _keys(result)
    written["markdown"] = atomic_write(out / REPORT_MD, _markdown_report(
        result, keys, samples, Path(PLOT_FILE) if plot_png else None, reason))
    written["html"] = atomic_write(out / REPORT_HTML, _html_report(result, keys, samples, out, plot_png, reason))
    return written


@dataclass(frozen=True)
class ComparisonRow:
    metric: str
    higher_is_better: Direction
    values: list[float | None]  # one per column; None where that result lacks the metric
    best: list[int]  # columns holding the best value (ties share it); empty without a direction or a difference


@dataclass(frozen=True)
class Comparison:
    columns: list[str]  # one per result: its action, made unique with its folder where needed
    sources: list[Path]  # each result's metrics.json
    rows: list[ComparisonRow]


def _columns(results: list[EvalResult]) -> list[str]:
    names = [r.action for r in results]
    names = [f"{n} ({r.path.parent.name})" if names.count(n) > 1 else n for n, r in zip(names, results)]
    return [f"{n} #{i + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def compare(results: Sequence[EvalResult | Path | str]) -> Comparison:
    """Several eval results (or their metrics.json files) side by side, best value per metric marked."""
    if not results:
        raise MetricsFileError("compare: no results to compare", hint="pass two or more metrics.json files")
    loaded = [r if isinstance(r, EvalResult) else load_result(r) for r in results]
    rows = []
    for key in dict.fromkeys(k for r in loaded for k in r.summary):
        directions = {r.higher_is_better[key] for r in loaded if r.higher_is_better.get(key) is not None}
        direction = directions.pop() if len(directions) == 1 else None  # disagreeing plugins: no winner
        values = [r.summary[key] if math.isfinite(r.summary.get(key, math.nan)) else None for r in loaded]
        rows.append(ComparisonRow(key, direction, values, best(values, direction)))
    return Comparison(_columns(loaded), [r.path for r in loaded], rows)


def write_comparison(comparison: Comparison, out_dir: Path | str) -> dict[str, Path]:
    """comparison.md (best values in bold) and comparison.html (best cells highlighted) in ``out_dir``."""
    out = Path(out_dir)
    header = ["metric", "better"] + comparison.columns
    md_rows = [[_md_cell(row.metric), ARROWS[row.higher_is_better]]
               + [f"**{format_value(v)}**" if i in row.best else format_value(v) for i, v in enumerate(row.values)]
               for row in comparison.rows]
    sources = [f"- {_md_cell(c)}: `{p}`" for c, p in zip(comparison.columns, comparison.sources)]
    markdown = "\n\n".join([
        "# flashctl eval: comparison", f"Best value per metric in bold. {LEGEND}",
        _md_table([_md_cell(h) for h in header], ["---", ":-:"] + ["---:"] * len(comparison.columns), md_rows),
        "## Sources", "\n".join(sources)]) + "\n"
    html_rows = [[(row.metric, ""), (ARROWS[row.higher_is_better], "dir")]
                 + [(format_value(v), "num best" if i in row.best else "num") for i, v in enumerate(row.values)]
                 for row in comparison.rows]
    items = "".join(f"<li>{_text(c)}: <code>{_text(str(p))}</code></li>"
                    for c, p in zip(comparison.columns, comparison.sources))
    body = (f"<p>Best value per metric highlighted. {_text(LEGEND)}</p>{_html_table(header, html_rows)}"
            f"<h2>Sources</h2><ul>{items}</ul>")
    return {"markdown": atomic_write(out / COMPARISON_MD, markdown),
            "html": atomic_write(out / COMPARISON_HTML, _html_page("flashctl eval: comparison", body))}
