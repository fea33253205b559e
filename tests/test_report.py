"""Eval reports (Markdown, HTML, samples, plots), comparisons, and `flashctl eval` / `eval --compare`."""

from __future__ import annotations

import base64
import io
import json
import re
import sys

import numpy as np
import pytest
from PIL import Image

from cli_kit import run
from flashctl.config import FlashConfig
from flashctl.directions import ARROWS
from flashctl.errors import MetricsFileError
from flashctl.library import MotionLibrary
from flashctl.pipeline.evaluate import EvalResult, evaluate
from flashctl.pipeline.report import compare, format_value, load_result, write_comparison, write_report
from flashctl.progress import ListReporter
from flashctl.video import GUTTER, LABEL_BAND, contact_sheet, probe

CLIPS, FRAMES, SIZE = 2, 6, 16
SHEET = (FRAMES * (SIZE + GUTTER) - GUTTER, LABEL_BAND + SIZE + LABEL_BAND)  # a labelled one-row contact sheet
METRICS = ["first-frame", "smoothness", "motion-fidelity"]


def clip(i: int) -> np.ndarray:
    """(F, S, S, 3) uint8: a square moving right, colours depending on i."""
    video = np.full((FRAMES, SIZE, SIZE, 3), (40 + 60 * i, 90, 150), np.uint8)
    for t in range(FRAMES):
        video[t, 4:9, 1 + 2 * t:6 + 2 * t] = (230, 180 - 60 * i, 40)
    return video


class Drifting:
    """Starts at the reference image, then fades it towards grey: moves, but not like the clip."""

    fps = 6.0

    def __init__(self) -> None:
        self.rendered: list[np.ndarray] = []

    def render(self, image: np.ndarray, seed: int) -> np.ndarray:
        fade = np.linspace(0, 0.8, FRAMES)[:, None, None, None]  # (F, 1, 1, 1)
        video = (image[None] * (1 - fade) + 128 * fade).round().astype(np.uint8)  # (F, H, W, 3)
        self.rendered.append(video)
        return video


def make_library(root, actions=("wave",)) -> MotionLibrary:
    lib = MotionLibrary(root)
    for action in actions:
        lib.path(action).mkdir(parents=True)
        (lib.path(action) / "motion.toml").write_text(
            f'schema_version = 1\nname = "{action}"\nprompt = "a person doing {action}"\n')
        lib.save_frames(action, np.stack([clip(i) for i in range(CLIPS)]), {"frames": FRAMES, "size": SIZE})
    return lib


def decoded_images(page: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(data)))
            for data in re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', page)]


def write_metrics(path, action, summary, directions) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"action": action, "summary": summary, "higher_is_better": directions,
                                "samples": [{"reference": "clip 0", "seed": 0, "scores": summary}]}))


def test_report_shows_summary_samples_and_plots(host, tmp_path):
    library = make_library(tmp_path / "motions")
    config = FlashConfig.model_validate({"eval": {"metrics": METRICS}, "prepare": {"size": SIZE}})
    animator = Drifting()
    result = evaluate(config, library, "wave", host, animator=animator)
    out = result.path.parent
    written = write_report(result, out)

    assert set(written) == {"markdown", "html", "samples", "plot"}
    assert all(p.exists() and p.parent == out for p in written.values())
    for i, frames in enumerate(animator.rendered):  # every video and its real clip are kept as mp4 + labelled sheet
        name = f"0{i}_clip-{i}"
        for suffix, video, source in (("", frames, f"generated · clip {i} · wave"),
                                      ("_real", clip(i), f"real clip · clip {i}")):
            assert probe(out / "samples" / f"{name}{suffix}.mp4").frames == FRAMES
            sheet = np.asarray(Image.open(out / "samples" / f"{name}{suffix}_sheet.png"))
            assert np.array_equal(sheet, contact_sheet(video, source=source))

    series = result.per_sample[0]["series"]
    assert series["psnr_reference"][0] == pytest.approx(result.per_sample[0]["scores"]["first-frame/psnr"])
    assert series["psnr_reference"] == sorted(series["psnr_reference"], reverse=True)  # it drifts away
    assert len(series["change"]) == len(series["target_change"]) == FRAMES - 1
    assert len(series["psnr_target"]) == FRAMES

    markdown, page = written["markdown"].read_text(), written["html"].read_text()
    for key, value in result.summary.items():
        arrow = ARROWS[result.higher_is_better[key]]
        assert f"| {key} | {arrow} | {format_value(value)} |" in markdown
        assert re.search(rf"<td[^>]*>{re.escape(key)}</td><td[^>]*>{arrow}</td><td[^>]*>"
                         rf"{re.escape(format_value(value))}</td>", page)
    assert "smoothness/jump_ratio →1" in markdown and "(samples/00_clip-0_sheet.png)" in markdown
    assert markdown.index("(per_frame.png)") < markdown.index("## Summary") < markdown.index("00_clip-0_real_sheet.png")
    assert "smoothness/<wbr>jump_<wbr>ratio →1</th>" in page  # long keys wrap to keep the table inside 1280 px
    videos = re.findall(r'<video src="([^"]+)"', page)
    assert videos == [f"samples/0{i}_clip-{i}{suffix}.mp4" for i in range(CLIPS) for suffix in ("_real", "")]
    assert all((out / src).is_file() for src in videos)
    images = decoded_images(page)
    sheets = [im for im in images if im.size == SHEET]
    plots = [im for im in images if im.size == Image.open(written["plot"]).size]
    assert len(sheets) == 2 * CLIPS and len(plots) == 1 and plots[0].size[0] > 400
    # the curves lead, then the summary, then each sample's real clip beside the generated one, then the scores
    order = [page.index(text) for text in ("per-frame curves", "<h2>Summary", 'alt="real clip"', 'alt="generated"',
                                           "<h2>Per-sample scores")]
    assert order == sorted(order)

    # regenerated from metrics.json alone: same numbers, and the sheets the first run left are reused
    loaded = load_result(result.path)
    assert loaded.summary == pytest.approx(result.summary) and loaded.higher_is_better == result.higher_is_better
    again = write_report(loaded, out)
    assert "samples" not in again
    assert len([im for im in decoded_images(again["html"].read_text()) if im.size == SHEET]) == 2 * CLIPS


def test_report_without_matplotlib_still_has_tables(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    result = EvalResult("wave", [{"reference": "me.png", "seed": 0, "scores": {"first-frame/psnr": 31.25},
                                  "series": {"psnr_reference": [31.25, 20.0], "change": [0.1]}}],
                        {"first-frame/psnr": 31.25}, tmp_path / "metrics.json", {"first-frame/psnr": True})
    reporter = ListReporter()
    written = write_report(result, tmp_path / "out", reporter=reporter)

    assert set(written) == {"markdown", "html"} and not (tmp_path / "out" / "per_frame.png").exists()
    for path in written.values():
        text = path.read_text()
        assert "31.25" in text and "pip install 'flashctl[report]'" in text
    assert any("flashctl[report]" in n for n in reporter.notes("warning"))


def test_compare_picks_the_best_in_each_direction(tmp_path):
    directions = {"m/psnr": True, "m/jump": False, "m/info": None}
    paths = [tmp_path / v / "metrics.json" for v in ("plain", "mam", "flash")]
    write_metrics(paths[0], "wave", {"m/psnr": 30.0, "m/jump": 1.5, "m/info": 3.0}, directions)
    write_metrics(paths[1], "wave", {"m/psnr": 25.0, "m/jump": 1.1, "m/info": 1.0}, directions)
    write_metrics(paths[2], "wave", {"m/psnr": 30.0, "m/jump": 2.0, "m/extra": 0.5}, {**directions, "m/extra": True})
    in_memory = EvalResult("squat", [], {"m/psnr": 12.0, "m/jump": 0.9}, tmp_path / "squat.json", directions)

    comparison = compare([*paths, in_memory])
    assert comparison.columns == ["wave (plain)", "wave (mam)", "wave (flash)", "squat"]
    assert comparison.sources == [*paths, in_memory.path]
    rows = {row.metric: row for row in comparison.rows}
    assert list(rows) == ["m/psnr", "m/jump", "m/info", "m/extra"]
    assert rows["m/psnr"].best == [0, 2]  # higher is better, a tie
    assert rows["m/jump"].best == [3]  # lower is better
    assert rows["m/info"].best == [] and rows["m/info"].higher_is_better is None
    assert rows["m/extra"].values == [None, None, 0.5, None] and rows["m/extra"].best == []  # one value: no winner
    assert compare(paths[:1] + paths[2:]).rows[0].best == []  # all equal: nothing to highlight

    written = write_comparison(comparison, tmp_path / "cmp")
    markdown, page = written["markdown"].read_text(), written["html"].read_text()
    assert "| m/psnr | ↑ | **30** | 25 | **30** | 12 |" in markdown
    assert "| m/jump | ↓ | 1.5 | 1.1 | 2 | **0.9** |" in markdown
    assert "| m/info |  | 3 | 1 | – | – |" in markdown
    best_cells = re.findall(r"<tr><td[^>]*>([^<]+)</td>|<td class=\"num best\">([^<]+)</td>", page)
    best_by_row: dict[str, list[str]] = {}
    for metric, value in best_cells:
        if metric:
            current = best_by_row.setdefault(metric, [])
        else:
            current.append(value)
    assert best_by_row == {"m/psnr": ["30", "30"], "m/jump": ["0.9"], "m/info": [], "m/extra": []}


def test_eval_compare_on_the_command_line(tmp_path, capsys):
    directions = {"first-frame/psnr": True, "smoothness/jump": False}
    a, b = tmp_path / "a" / "metrics.json", tmp_path / "b" / "metrics.json"
    write_metrics(a, "wave", {"first-frame/psnr": 28.5, "smoothness/jump": 1.25}, directions)
    write_metrics(b, "squat", {"first-frame/psnr": 31.5, "smoothness/jump": 1.75}, directions)

    r = run(capsys, "eval", "--compare", a, b.parent, "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["comparison"]["columns"] == ["wave", "squat"]
    best = {row["metric"]: row["best"] for row in data["comparison"]["rows"]}
    assert best == {"first-frame/psnr": ["squat"], "smoothness/jump": ["wave"]}
    assert [res["path"] for res in data["results"]] == [str(a), str(b)]
    assert (tmp_path / "eval-comparison" / "comparison.html").is_file()  # conftest runs in tmp_path

    r = run(capsys, "eval", "--compare", a, b, "--out", tmp_path / "cmp")
    assert r.code == 0, r.err
    table = r.out.splitlines()
    assert any("wave" in line and "squat" in line for line in table)
    assert any("first-frame/psnr" in line and "28.5" in line and "31.5" in line for line in table)
    assert "**31.5**" in (tmp_path / "cmp" / "comparison.md").read_text()


@pytest.mark.parametrize("content, expected", [
    (None, "no such file"),
    ('{"action": "wave", "summary": {', "not valid JSON"),
    ('{"action": "wave", "summary": [1, 2]}', "metrics.json: summary: "),
    ('{"action": "wave", "summary": {"first-frame/psnr": "high"}}', "metrics.json: summary.first-frame/psnr: "),
])
def test_eval_compare_rejects_a_bad_metrics_file(tmp_path, capsys, content, expected):
    good, bad = tmp_path / "good" / "metrics.json", tmp_path / "bad" / "metrics.json"
    write_metrics(good, "wave", {"first-frame/psnr": 28.5}, {"first-frame/psnr": True})
    before = good.read_bytes()
    if content is not None:
        bad.parent.mkdir()
        bad.write_text(content)

    r = run(capsys, "eval", "--compare", good, bad, "--out", tmp_path / "cmp")
    assert r.code == 1
    error = next(line for line in r.err.splitlines() if line.startswith("error:"))
    assert str(bad) in error and expected in error and "Traceback" not in r.err
    assert good.read_bytes() == before and not (tmp_path / "cmp").exists()
    with pytest.raises(MetricsFileError, match=re.escape(expected)):
        load_result(bad)


def test_eval_several_actions_reports_each_and_compares(tmp_path, capsys, monkeypatch):
    make_library(tmp_path / "motions", ("wave", "squat"))
    (tmp_path / "flashctl.toml").write_text(f'[prepare]\nsize = {SIZE}\n[eval]\nmetrics = ["first-frame"]\n')
    monkeypatch.setattr("flashctl.pipeline.animate.load_animator", lambda *args, **kwargs: Drifting())

    r = run(capsys, "eval", "wave", "squat", "--out", tmp_path / "out", "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert [res["action"] for res in data["results"]] == ["wave", "squat"]
    for action in ("wave", "squat"):
        assert data["reports"][f"{action}/html"] == str(tmp_path / "out" / action / "report.html")
        assert (tmp_path / "out" / action / "metrics.json").is_file()
        assert (tmp_path / "out" / action / "samples" / "01_clip-1.mp4").is_file()
    assert data["comparison"]["columns"] == ["wave", "squat"]
    assert (tmp_path / "out" / "comparison.md").is_file()
    page = (tmp_path / "out" / "comparison.html").read_text()
    images = decoded_images(page)
    assert len([im for im in images if im.size == SHEET]) == 2 * 2 * CLIPS  # per sample: each action's video and clip
    assert len([im for im in images if im.size[0] > 400]) == 1  # one plot with both actions' mean curves
    assert page.index("<h2>Per-frame curves") < page.index("<h2>Scores") < page.index("<h2>Samples side by side")
    assert 'href="wave/report.html"' in page and 'src="squat/samples/00_clip-0.mp4"' in page

    r = run(capsys, "eval", "wave", "--json")  # one action: its summary, reports in the motion's eval folder
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["action"] == "wave" and "comparison" not in data and "first-frame/psnr" in data["summary"]
    assert data["reports"]["html"] == str(tmp_path / "motions" / "wave" / "eval" / "report.html")
    assert (tmp_path / "motions" / "wave" / "eval" / "per_frame.png").is_file()

    r = run(capsys, "eval", "wave", "nope", "--out", tmp_path / "again")
    assert r.code == 1 and "'nope'" in r.err and "Traceback" not in r.err
    assert not (tmp_path / "again").exists()  # checked before anything was rendered


def test_compare_and_reports_honour_near_one(tmp_path):
    from flashctl.directions import NEAR_ONE

    directions = {"m/ratio": NEAR_ONE}
    paths = [tmp_path / v / "metrics.json" for v in ("frozen", "close", "double")]
    for path, value in zip(paths, (0.05, 0.8, 2.0)):
        write_metrics(path, "wave", {"m/ratio": value}, directions)
    loaded = load_result(paths[0])
    assert loaded.higher_is_better == {"m/ratio": NEAR_ONE}  # survives the JSON round trip
    row = compare(paths).rows[0]
    assert row.higher_is_better == NEAR_ONE and row.best == [1]  # 0.8 is nearer 1 than 0.05 or 2.0
    assert compare([paths[2], paths[2]]).rows[0].best == []
    half = tmp_path / "half" / "metrics.json"
    write_metrics(half, "wave", {"m/ratio": 0.5}, directions)
    assert compare([paths[2], half]).rows[0].best == []  # 2x and 0.5x are equally far from 1
    written = write_comparison(compare(paths), tmp_path / "cmp")
    assert "| m/ratio | →1 | 0.05 | **0.8** | 2 |" in written["markdown"].read_text(encoding="utf-8")


def test_compare_marks_the_value_closest_to_one_for_a_declared_near_one_metric(tmp_path, capsys):
    """smoothness declares jump_ratio "near 1": even a metrics.json that recorded "higher is better" ranks by it."""
    paths = [tmp_path / name / "metrics.json" for name in ("slow", "close", "fast")]
    for path, value in zip(paths, (0.83, 0.97, 1.6)):
        write_metrics(path, path.parent.name, {"smoothness/jump_ratio": value, "m/ratio": value},
                      {"smoothness/jump_ratio": True, "m/ratio": True})
    r = run(capsys, "eval", "--compare", *paths, "--out", tmp_path / "cmp", "--json")
    assert r.code == 0, r.err
    rows = {row["metric"]: row for row in json.loads(r.out)["comparison"]["rows"]}
    assert rows["smoothness/jump_ratio"]["higher_is_better"] == "near 1"
    assert rows["smoothness/jump_ratio"]["best"] == ["close"]  # 0.97, not the largest (1.6) nor 0.83
    assert rows["m/ratio"]["best"] == ["fast"]  # an unregistered metric keeps the direction its file recorded
    markdown = (tmp_path / "cmp" / "comparison.md").read_text(encoding="utf-8")
    assert "| smoothness/jump_ratio | →1 | 0.83 | **0.97** | 1.6 |" in markdown
    page = (tmp_path / "cmp" / "comparison.html").read_text(encoding="utf-8")
    assert re.search(r"smoothness/jump_ratio</td><td[^>]*>→1</td><td[^>]*>0\.83</td><td class=\"num best\">0\.97</td>", page)
