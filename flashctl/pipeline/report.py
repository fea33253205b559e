"""Eval reports: Markdown and HTML for one result, and side-by-side comparisons of several.

:func:`write_report` writes ``report.md`` and ``report.html`` (self-contained but for the mp4s:
inline CSS, labelled contact sheets and plots embedded as PNG data), ``samples/`` (an mp4 and a
contact sheet per sample, and the same for its real clip, when the result still holds its rendered
videos) and ``per_frame.png`` (per-frame curves, drawn with matplotlib, the optional extra
``flashctl[report]``; without it the reports say so). The page leads with the curves, then the
summary, then each sample's real clip beside the generated one, then the per-sample scores; its
tables wrap their keys to fit a 1280 px window.
:func:`compare` lines several results up metric by metric and marks the best value according to
each key's declared ideal (the metric's traits when a registry is given, else the direction each
metrics.json recorded); :func:`write_comparison` renders that as ``comparison.md`` / ``.html`` with
the mean curves of every result in one plot and their samples side by side.
Every file is written atomically.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from pydantic import BaseModel, ConfigDict, ValidationError

from ..directions import ARROWS, LEGEND, Direction, best
from ..errors import MetricsFileError
from ..files import atomic_path, atomic_write
from ..progress import NullReporter, Reporter
from ..validation import render_validation_error
from .evaluate import METRICS_FILE, EvalResult

if TYPE_CHECKING:
    from ..registry import Registry

REPORT_MD, REPORT_HTML, PLOT_FILE, SAMPLES_DIR = "report.md", "report.html", "per_frame.png", "samples"
COMPARISON_MD, COMPARISON_HTML = "comparison.md", "comparison.html"
NO_MATPLOTLIB = "per-frame plots need matplotlib: pip install 'flashctl[report]'"
# series key, dashed companion from the real clip, title, y label, index of the first value's frame
PANELS = (
    ("change", "target_change", "Frame-to-frame change", "mean |frame t − frame t−1| (0–1)", 1),
    ("psnr_target", None, "Agreement with the real clip", "PSNR vs real frame t (dB, max 100)", 0),
    ("psnr_reference", None, "Fidelity to the reference image", "PSNR vs reference (dB, max 100)", 0),
)
PLOT_NOTE = ("Solid lines: generated; dashed: the real clip. Frame-to-frame change is the mean absolute "
             "difference between consecutive frames: a still image stays at 0, the real clip shows how much "
             "the action moves.")
CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:1.5rem auto;max-width:1180px;padding:0 1rem;color:#222}
h1{font-size:1.5rem;margin-bottom:.3rem}h2{font-size:1.15rem;margin-top:1.8rem;border-bottom:1px solid #ddd}
h3{font-size:1rem;margin:1.2rem 0 .4rem;overflow-wrap:anywhere}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}th,td{border:1px solid #ccc;padding:.2rem .5rem}
th{background:#f4f4f4;text-align:left;vertical-align:bottom;overflow-wrap:break-word}
td{overflow-wrap:break-word}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.best{background:#d7f0d7;font-weight:bold}.dir{text-align:center;color:#555}
figure{margin:0}figcaption{color:#555;font-size:.9rem}.meta,.note{color:#555}.note{color:#8a5a00}
.side{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:1rem;align-items:start}
img.sheet{max-width:100%;display:block;margin-top:.3rem}img.plot{width:100%}
video{width:min(100%,192px);image-rendering:pixelated;background:#000;display:block}
.wide{overflow-x:auto;max-width:100%}code{font-size:.9em;overflow-wrap:anywhere}
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
    weights: dict[str, Any] | None = None


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
                      record.higher_is_better, weights=record.weights)


def weights_line(result: EvalResult) -> str:
    """Which weights the scores belong to: run id and short sha256s, or why that is unknown."""
    w = result.weights
    if not w:
        return "Scored weights: not recorded (an older metrics.json, or a stand-in animator)."
    parts = [f"lora.safetensors sha256 {str(w.get('lora_sha256'))[:12]}"]
    if w.get("decoder_sha256"):
        parts.append(f"decoder.safetensors sha256 {str(w['decoder_sha256'])[:12]}")
    return f"Scored weights: run {w.get('run_id') or w.get('version')}, {', '.join(parts)}."


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


@dataclass(frozen=True)
class _SampleFiles:
    """One sample's files under a report folder, relative to it; None where there is none."""

    label: str
    video: Path | None
    sheet: Path | None
    real_video: Path | None
    real_sheet: Path | None


def _sample_files(folder: Path, index: int, label: str) -> _SampleFiles:
    name = _sample_name(index, label)
    paths = [Path(SAMPLES_DIR, name + suffix) for suffix in (".mp4", "_sheet.png", "_real.mp4", "_real_sheet.png")]
    return _SampleFiles(label, *(path if (folder / path).is_file() else None for path in paths))


def _png(image: Any) -> bytes:
    """``(H, W, 3)`` uint8 -> PNG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _text(text: str) -> str:
    """Escape text content (attribute values use html.escape with quotes)."""
    return html.escape(text, quote=False)


def _breakable(text: str) -> str:
    """Escaped text that may wrap after ``/`` and ``_`` (metric keys in narrow table headers)."""
    return re.sub(r"([/_])", r"\1<wbr>", _text(text))


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _write_samples(result: EvalResult, out: Path, reporter: Reporter) -> Path:
    """samples/<name>.mp4 and <name>_sheet.png per rendered video, <name>_real.* for its real clip.

    Replaces the folder as one unit.
    """
    from ..video import contact_sheet, write_mp4

    targets = result.targets or [None] * len(result.videos)
    reporter.start("report samples", total=len(result.videos))
    with atomic_path(out / SAMPLES_DIR) as tmp:
        tmp.mkdir()
        for i, (row, frames, real) in enumerate(zip(result.per_sample, result.videos, targets)):
            name, label = _sample_name(i, row["reference"]), _short_label(row["reference"])
            for suffix, video, source in (("", frames, f"generated · {label} · {result.action}"),
                                          ("_real", real, f"real clip · {label}")):
                if video is not None:  # (F, H, W, 3) uint8
                    write_mp4(tmp / f"{name}{suffix}.mp4", video, result.fps)
                    atomic_write(tmp / f"{name}{suffix}_sheet.png", _png(contact_sheet(video, source=source)))
            reporter.advance(1)
    reporter.finish()
    return out / SAMPLES_DIR


def _mean_series(result: EvalResult) -> dict[str, list[float | None]]:
    """Per series key, the mean over the samples of each frame's value (frames some samples lack: over the rest)."""
    means: dict[str, list[float | None]] = {}
    for key in dict.fromkeys(k for row in result.per_sample for k in row.get("series", {})):
        curves = [row["series"][key] for row in result.per_sample if row.get("series", {}).get(key)]
        columns = [[v for v in (c[t] for c in curves if t < len(c)) if v is not None and math.isfinite(v)]
                   for t in range(max(len(c) for c in curves))]
        means[key] = [sum(col) / len(col) if col else None for col in columns]
    return means


def _plot(title: str, lines: list[tuple[str, dict[str, list[float | None]]]]) -> bytes:
    """A PNG with one panel per available series, one colour per line (dashed: its real clip)."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    panels = [p for p in PANELS if any(s.get(p[0]) for _, s in lines)]
    figure = Figure(figsize=(4.4 * len(panels), 3.6), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, dashed, panel_title, ylabel, first) in zip(axes, panels):
        for i, (_, curves) in enumerate(lines):
            for name, style in ((key, "-"), (dashed, "--")):
                values = curves.get(name) if name else None
                if values:
                    frames = range(first, first + len(values))
                    ax.plot(frames, [math.nan if v is None else v for v in values], style, color=f"C{i % 10}",
                            marker="o", markersize=3, linewidth=1.4)
        if dashed and any(s.get(dashed) for _, s in lines):
            ax.legend([Line2D([], [], color="0.3"), Line2D([], [], color="0.3", linestyle="--")],
                      ["generated", "real clip"], fontsize="small")
        ax.set(title=panel_title, xlabel="frame", ylabel=ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=f"C{i % 10}", marker="o", markersize=3) for i in range(len(lines))]
    figure.legend(handles, [label for label, _ in lines], loc="outside lower center", ncol=min(len(lines), 6),
                  fontsize="small")
    figure.suptitle(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _plot_or_reason(title: str, lines: list[tuple[str, dict[str, list[float | None]]]]) -> tuple[bytes | None, str]:
    if not any(series.get(panel[0]) for _, series in lines for panel in PANELS):
        return None, "no per-frame series in this metrics.json (re-run `flashctl eval` to get plots)"
    try:
        import matplotlib  # noqa: F401  (the optional extra)
    except ImportError:
        return None, NO_MATPLOTLIB
    return _plot(title, lines), ""


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], align: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[tuple[str, str]]]) -> str:
    """``rows`` of (text, css class) cells; all text is escaped here, header keys may wrap after / and _."""
    head = "".join(f"<th>{_breakable(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="{cls}">{_text(text)}</td>' if cls else f"<td>{_text(text)}</td>"
                                    for text, cls in row) + "</tr>" for row in rows)
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _html_page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{_text(title)}</title>'
            f"<style>{CSS}</style></head><body>\n<h1>{_text(title)}</h1>\n{body}\n</body></html>\n")


def _html_plot(plot_png: bytes | None, reason: str) -> str:
    if not plot_png:
        return f'<p class="note">{_text(reason)}.</p>'
    return (f'<figure><img class="plot" alt="per-frame curves" src="{_data_uri(plot_png)}">'
            f"<figcaption>{_text(PLOT_NOTE)}</figcaption></figure>")


def _html_media(folder: Path, href: Path, caption: str, video: Path | None, sheets: list[Path | None]) -> str:
    """A figure with a looping video (linked relative to ``href``) over contact sheets (embedded, labelled)."""
    media = ""
    if video:
        src = html.escape(Path(os.path.relpath(folder / video, href)).as_posix())
        media += f'<video src="{src}" controls loop muted autoplay playsinline></video>'
    for sheet in filter(None, sheets):
        media += f'<img class="sheet" alt="{html.escape(caption)}" src="{_data_uri((folder / sheet).read_bytes())}">'
    return f"<figure><figcaption>{_text(caption)}</figcaption>{media}</figure>" if media else ""


def _markdown_report(result: EvalResult, keys: list[str], samples: list[_SampleFiles], plot: Path | None,
                     reason: str) -> str:
    arrows = {k: ARROWS[result.higher_is_better.get(k)] for k in keys}
    summary = _md_table(["metric", "better", "mean"], ["---", ":-:", "---:"],
                        [[_md_cell(k), arrows[k], format_value(result.summary.get(k))] for k in keys])
    per_sample = _md_table(["sample"] + [_md_cell(f"{k} {arrows[k]}".strip()) for k in keys], ["---"] + ["---:"] * len(keys),
                           [[_md_cell(row["reference"])] + [format_value(row["scores"].get(k)) for k in keys]
                            for row in result.per_sample])
    curves = f"![per-frame curves]({plot.as_posix()})\n\n{PLOT_NOTE}" if plot else f"_{reason}._"
    parts = [f"# flashctl eval: {result.action}", f"{len(result.per_sample)} samples, from `{result.path}`. {LEGEND}",
             weights_line(result),
             "## Per-frame curves", curves,
             "## Summary", summary, "## Samples: real clip and generated"]
    for files in samples:
        parts.append(f"**{_md_cell(files.label)}**" + "".join(
            f" ([{what} mp4]({video.as_posix()}))" for what, video in (("real", files.real_video),
                                                                      ("generated", files.video)) if video))
        parts += [f"![{what}: {_md_cell(files.label)}]({sheet.as_posix()})"
                  for what, sheet in (("real clip", files.real_sheet), ("generated", files.sheet)) if sheet]
    if not any(files.video or files.sheet for files in samples):
        parts.append("_No rendered samples in this folder._")
    parts += ["## Per-sample scores", per_sample]
    return "\n\n".join(parts) + "\n"


def _html_report(result: EvalResult, keys: list[str], samples: list[_SampleFiles], out: Path,
                 plot_png: bytes | None, reason: str) -> str:
    arrows = {k: ARROWS[result.higher_is_better.get(k)] for k in keys}
    summary = _html_table(["metric", "better", "mean"],
                          [[(k, ""), (arrows[k], "dir"), (format_value(result.summary.get(k)), "num")] for k in keys])
    per_sample = _html_table(["sample"] + [f"{k} {arrows[k]}".strip() for k in keys],
                             [[(_short_label(row["reference"]), "")]
                              + [(format_value(row["scores"].get(k)), "num") for k in keys]
                              for row in result.per_sample])
    sections = []
    for files in samples:
        figures = (_html_media(out, out, "real clip", files.real_video, [files.real_sheet])
                   + _html_media(out, out, "generated", files.video, [files.sheet]))
        if figures:
            sections.append(f'<h3>{_text(files.label)}</h3><div class="side">{figures}</div>')
    if not sections:
        sections.append('<p class="note">No rendered samples in this folder.</p>')
    body = (f'<p class="meta">{len(result.per_sample)} samples, from <code>{_text(str(result.path))}</code>.</p>\n'
            f'<p class="meta">{_text(weights_line(result))}</p>\n'
            f"<h2>Per-frame curves</h2>{_html_plot(plot_png, reason)}\n"
            f"<h2>Summary</h2>{summary}<p class=\"meta\">{_text(LEGEND)}</p>\n"
            f"<h2>Samples: real clip and generated</h2>{''.join(sections)}\n"
            f"<h2>Per-sample scores</h2>{per_sample}")
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
    samples = [_sample_files(out, i, row["reference"]) for i, row in enumerate(result.per_sample)]
    lines = [(_short_label(row["reference"]), row.get("series", {})) for row in result.per_sample]
    plot_png, reason = _plot_or_reason(f"{result.action}: per-frame curves, one colour per sample", lines)
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
    results: list[EvalResult] = field(default_factory=list, repr=False)  # the results compared, in column order


def _columns(results: list[EvalResult]) -> list[str]:
    names = [r.action for r in results]
    names = [f"{n} ({r.path.parent.name})" if names.count(n) > 1 else n for n, r in zip(names, results)]
    return [f"{n} #{i + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def _direction(key: str, loaded: list[EvalResult], registry: Registry | None) -> Direction:
    """The direction the metric declares for ``key`` when it is registered and declares one, else the files' own."""
    metric, _, sub = key.partition("/")
    if registry is not None and metric in registry.names("metric"):
        declared = registry.get("metric", metric).traits.direction(sub)
        if declared is not None:
            return declared
    directions = {r.higher_is_better[key] for r in loaded if r.higher_is_better.get(key) is not None}
    return directions.pop() if len(directions) == 1 else None  # disagreeing plugins: no winner


def compare(results: Sequence[EvalResult | Path | str], registry: Registry | None = None) -> Comparison:
    """Several eval results (or their metrics.json files) side by side, best value per metric marked.

    "Best" follows each key's ideal: the largest, the smallest, or for a ``near 1`` key the value
    closest to 1. With ``registry``, what a registered metric's traits declare (``traits.direction(key)``)
    decides, so an old metrics.json that recorded another direction is still ranked the way the metric means.
    """
    if not results:
        raise MetricsFileError("compare: no results to compare", hint="pass two or more metrics.json files")
    loaded = [r if isinstance(r, EvalResult) else load_result(r) for r in results]
    rows = []
    for key in dict.fromkeys(k for r in loaded for k in r.summary):
        direction = _direction(key, loaded, registry)
        values = [r.summary[key] if math.isfinite(r.summary.get(key, math.nan)) else None for r in loaded]
        rows.append(ComparisonRow(key, direction, values, best(values, direction)))
    return Comparison(_columns(loaded), [r.path for r in loaded], rows, loaded)


def _comparison_samples(comparison: Comparison, out: Path) -> str:
    """Per sample index, each result's generated clip side by side, each over its real clip's sheet when there is one."""
    sections = []
    for i in range(max((len(r.per_sample) for r in comparison.results), default=0)):
        figures = ""
        for column, result in zip(comparison.columns, comparison.results):
            if i < len(result.per_sample):
                folder, label = result.path.parent, result.per_sample[i]["reference"]
                files = _sample_files(folder, i, label)
                caption = f"{column}: {_short_label(label)}"
                figures += _html_media(folder, out, caption, files.video, [files.sheet, files.real_sheet])
        if figures:
            sections.append(f'<h3>sample {i}</h3><div class="side">{figures}</div>')
    return "".join(sections) or '<p class="note">No rendered samples next to these metrics.json files.</p>'


def write_comparison(comparison: Comparison, out_dir: Path | str) -> dict[str, Path]:
    """comparison.md (best values in bold) and comparison.html in ``out_dir``.

    The HTML page shows each result's mean per-frame curves in one plot, the table with best cells
    highlighted, and the results' sample sheets side by side; both pages link each result's report.
    """
    out = Path(out_dir)
    header = ["metric", "better"] + comparison.columns
    md_rows = [[_md_cell(row.metric), ARROWS[row.higher_is_better]]
               + [f"**{format_value(v)}**" if i in row.best else format_value(v) for i, v in enumerate(row.values)]
               for row in comparison.rows]
    reports = [Path(os.path.relpath(p.parent / REPORT_HTML, out)).as_posix() for p in comparison.sources]
    sources = [f"- {_md_cell(c)}: `{p}` ([report]({r}))"
               for c, p, r in zip(comparison.columns, comparison.sources, reports)]
    markdown = "\n\n".join([
        "# flashctl eval: comparison", f"Best value per metric in bold. {LEGEND}",
        _md_table([_md_cell(h) for h in header], ["---", ":-:"] + ["---:"] * len(comparison.columns), md_rows),
        "## Sources", "\n".join(sources)]) + "\n"
    html_rows = [[(row.metric, ""), (ARROWS[row.higher_is_better], "dir")]
                 + [(format_value(v), "num best" if i in row.best else "num") for i, v in enumerate(row.values)]
                 for row in comparison.rows]
    items = "".join(f'<li>{_text(c)}: <code>{_text(str(p))}</code> (<a href="{html.escape(r)}">report</a>)</li>'
                    for c, p, r in zip(comparison.columns, comparison.sources, reports))
    lines = [(column, _mean_series(result)) for column, result in zip(comparison.columns, comparison.results)]
    plot_png, reason = _plot_or_reason("per-frame curves, mean over each result's samples", lines)
    body = (f'<p class="meta">{len(comparison.columns)} results. Best value per metric highlighted. '
            f"{_text(LEGEND)}</p>\n<h2>Per-frame curves</h2>{_html_plot(plot_png, reason)}\n"
            f"<h2>Scores</h2>{_html_table(header, html_rows)}\n"
            f"<h2>Samples side by side</h2>{_comparison_samples(comparison, out)}\n"
            f"<h2>Sources</h2><ul>{items}</ul>")
    return {"markdown": atomic_write(out / COMPARISON_MD, markdown),
            "html": atomic_write(out / COMPARISON_HTML, _html_page("flashctl eval: comparison", body))}
