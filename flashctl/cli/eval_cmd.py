"""flashctl eval: render held-out references with one or more motions, score them, write reports."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from .animate import expand_images
from .console import RichReporter, err, out, print_json
from .options import JsonOpt, SetOpt
from .state import state

if TYPE_CHECKING:
    from ..pipeline.evaluate import EvalResult
    from ..pipeline.report import Comparison

COMPARISON_DIR = Path("eval-comparison")


def eval_(
    actions: Annotated[list[str], typer.Argument(metavar="ACTION", help="Trained actions in the motion library; "
                       "several are compared side by side. With --compare: metrics.json files or their folders.")],
    compare_: Annotated[bool, typer.Option("--compare", help="Compare existing results without re-rendering: "
                        "the arguments are metrics.json files.")] = False,
    images: Annotated[Optional[list[Path]], typer.Option("--images", help="Reference images or folders "
                      "(default: first frames of the action's own clips, scored against their continuations).")] = None,
    clips: Annotated[Optional[list[Path]], typer.Option("--clips", help="Held-out clips or folders: each first "
                     "frame is animated and scored against the clip's real continuation.")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Report folder (default: <motion>/eval; "
                       f"with several actions each gets OUT/ACTION, the comparison goes to OUT or ./{COMPARISON_DIR}).")] = None,
    set_: SetOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Score each ACTION with the configured metrics; writes metrics.json, report.md and report.html.

    Under `accelerate launch` each process renders and scores a share of the samples; the main one writes.
    """
    from ..pipeline.report import compare, load_result, write_comparison

    actions = list(dict.fromkeys(actions))
    if compare_:
        if images or clips or set_:
            raise typer.BadParameter("--images, --clips and --set do not apply to --compare (nothing is rendered)")
        results, reports = [load_result(Path(a)) for a in actions], {}
    else:
        results, reports = _evaluate(actions, images, clips, out_dir, set_)
        if not all(r.main_process for r in results):  # under `accelerate launch`, only the main process reports
            return
    comparison = None
    if compare_ or len(results) > 1:
        comparison = compare(results, state.host(state.config(set_)).registry)  # "best" by the metrics' own traits
        written = write_comparison(comparison, out_dir or COMPARISON_DIR)
        reports.update({f"comparison/{kind}": path for kind, path in written.items()})

    if json_:
        print_json(_as_json(results, comparison, reports))
        return
    out.print(_summary_table(results[0]) if comparison is None else _comparison_table(comparison))
    for kind, path in reports.items():
        if not kind.endswith("metrics"):  # evaluate already said where metrics.json went
            err.print(f"wrote {path}", highlight=False)


def _evaluate(actions: list[str], images: list[Path] | None, clips: list[Path] | None, out_dir: Path | None,
              set_: list[str] | None) -> tuple[list[EvalResult], dict[str, Path]]:
    """Evaluate and report every action in turn (all are checked to exist before the first renders).

    Returns the results and the written files by kind (``ACTION/kind`` with several actions); under a
    launch the other processes' results have ``main_process=False`` and nothing written.
    """
    from ..pipeline.evaluate import evaluate
    from ..pipeline.report import write_report
    from ..sharding import current_shard

    config = state.config(set_)
    library, host = state.library(config), state.host(config)
    for action in actions:
        library.require(action)
    references = expand_images(images) if images else None
    reporter = current_shard(config).reporter(RichReporter())
    results, reports = [], {}
    for action in actions:
        folder = out_dir if out_dir is None or len(actions) == 1 else out_dir / action
        result = evaluate(config, library, action, host, images=references, clips=clips,
                          reporter=reporter, out_dir=folder)
        results.append(result)
        if not result.main_process:  # the main process gathered this process's samples and writes the reports
            continue
        written = {"metrics": result.path, **write_report(result, result.path.parent, reporter=reporter)}
        reports.update({kind if len(actions) == 1 else f"{action}/{kind}": path for kind, path in written.items()})
    reporter.finish()
    return results, reports


def _as_json(results: list[EvalResult], comparison: Comparison | None, reports: dict[str, Path]) -> dict:
    """One action: its summary; several (or --compare): every summary plus the comparison rows."""
    files = {kind: str(path) for kind, path in reports.items()}
    summaries = [{"action": r.action, "summary": r.summary, "path": str(r.path)} for r in results]
    if comparison is None:
        return {**summaries[0], "reports": files}
    rows = [{"metric": row.metric, "higher_is_better": row.higher_is_better,
             "values": dict(zip(comparison.columns, row.values)), "best": [comparison.columns[i] for i in row.best]}
            for row in comparison.rows]
    return {"results": summaries, "comparison": {"columns": comparison.columns, "rows": rows}, "reports": files}


def _summary_table(result: EvalResult) -> Table:
    from ..pipeline.report import ARROWS, format_value

    table = Table(title=f"{result.action}: {len(result.per_sample)} samples")
    table.add_column("metric")
    table.add_column("better", justify="center")
    table.add_column("mean", justify="right")
    for key, value in result.summary.items():
        table.add_row(Text(key), ARROWS[result.higher_is_better.get(key)], format_value(value))
    return table


def _comparison_table(comparison: Comparison) -> Table:
    from ..pipeline.report import ARROWS, format_value

    table = Table(title="comparison (best in bold green)")
    table.add_column("metric")
    table.add_column("better", justify="center")
    for column in comparison.columns:
        table.add_column(Text(column), justify="right")
    for row in comparison.rows:
        cells = [Text(format_value(v), style="bold green" if i in row.best else "") for i, v in enumerate(row.values)]
        table.add_row(Text(row.metric), ARROWS[row.higher_is_better], *cells)
    return table
