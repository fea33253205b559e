"""Experiment trackers: what train logs (read back through the jsonl tracker), failures, missing packages, the CLI."""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_kit import run
from flashctl.config import load_config
from flashctl.errors import ConfigError
from flashctl.library import MotionLibrary
from flashctl.pipeline.train import train
from flashctl.plugins import build_host
from flashctl.progress import ListReporter
from flashctl.trackers import TrackerRun, Trackers, check_trackers
from motion_kit import FRAMES, make_action, tiny_config

SMALL = {"backbone": {"animatediff": {"channels": [16, 32], "vae_channels": [8, 8, 8]}}}

FLAKY_PLUGIN = '''
from flashctl import hookimpl


class Flaky:
    def log(self, step, scalars):
        if step == 2:
            raise RuntimeError("disk full")

    def finish(self):
        pass


@hookimpl
def register_trackers(register):
    register("flaky", lambda options, ctx, run: Flaky(), summary="fails at step 2")
'''


def _lines(folder: Path) -> list[dict]:
    (run_dir,) = [p for p in folder.iterdir() if p.is_dir()]
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_jsonl_gets_every_step_the_decoder_fit_and_the_preview_and_training_is_unchanged(tmp_path):
    options = {**SMALL, "decoder": {"detail-enhance": {"train_steps": 2}}}
    untracked = tiny_config(tmp_path / "a", train={"steps": 3, "detail_decoder": True}, options=options,
                            model={"decoder": "detail-enhance"})
    tracked = tiny_config(tmp_path / "b", train={"steps": 3, "detail_decoder": True, "trackers": ["jsonl"]},
                          options=options, model={"decoder": "detail-enhance"})
    host = build_host()
    plain = train(untracked, make_action(untracked), "slide", host)
    library = make_action(tracked)
    reporter = ListReporter()
    result = train(tracked, library, "slide", host, reporter=reporter)

    provenance = library.provenance("slide")
    lines = _lines(library.cache_dir("slide") / "runs")
    run_dir = next((library.cache_dir("slide") / "runs").iterdir())
    assert run_dir.name == provenance["run_id"]  # the run folder is the motion's run id
    assert any(f"tracking to jsonl in {run_dir}" in n for n in reporter.notes())

    train_lines = [line for line in lines if "train/loss" in line.get("scalars", {})]
    assert [line["step"] for line in train_lines] == [1, 2, 3]
    assert [line["scalars"]["train/loss"] for line in train_lines] == pytest.approx(provenance["losses"])
    assert all(line["scalars"]["train/lr"] == pytest.approx(3e-3) for line in train_lines)
    assert all(np.isfinite(line["scalars"]["train/fixed_clip_loss"]) for line in train_lines)  # 3 steps: every one

    decoder = [(line["step"], line["scalars"]["decoder/fit_loss"]) for line in lines
               if "decoder/fit_loss" in line.get("scalars", {})]
    assert [s for s, _ in decoder] == [4, 5]  # after the 3 LoRA steps
    assert [v for _, v in decoder] == pytest.approx(provenance["decoder_losses"])

    (scores,) = [line for line in lines if "preview/mae" in line.get("scalars", {})]
    assert scores["step"] == 5 and 0 <= scores["scalars"]["preview/mae"] <= 1
    assert scores["scalars"]["preview/motion_gain"] >= 0
    (video,) = [line["video"] for line in lines if "video" in line]
    assert video["tag"] == "preview" and video["frames"] == FRAMES and video["fps"] == 8.0
    with Image.open(run_dir / video["file"]) as gif:
        assert gif.n_frames == FRAMES and gif.size == (video["width"], video["height"])
    assert lines[-1]["video"] == video  # the last line: nothing after the preview

    # the fixed-clip measurement has its own generator and no gradients: the same trajectory as untracked
    assert result.final_loss == plain.final_loss
    assert provenance["losses"] == MotionLibrary(untracked.library_path()).provenance("slide")["losses"]


def test_a_tracker_that_raises_is_a_warning_and_the_motion_is_saved(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "flaky.py").write_text(FLAKY_PLUGIN)
    config = tiny_config(tmp_path, train={"steps": 3, "trackers": ["flaky", "jsonl"]}, options=SMALL)
    library = make_action(config)
    host = build_host(paths=["plugins"], root=tmp_path)
    reporter = ListReporter()
    train(config, library, "slide", host, reporter=reporter, tracker_dir=tmp_path / "runs")

    assert library.is_trained("slide")
    (warning,) = reporter.notes("warning")
    assert warning == ("tracker 'flaky' failed at step 2 (RuntimeError: disk full); training goes on without it")
    steps = [line["step"] for line in _lines(tmp_path / "runs") if "train/loss" in line.get("scalars", {})]
    assert steps == [1, 2, 3]  # the other tracker kept logging


def test_unknown_tracker_is_one_config_line_listing_the_known_ones(tmp_path, capsys):
    config = tiny_config(tmp_path, options=SMALL)
    make_action(config)
    (tmp_path / "flashctl.toml").write_text("")
    r = run(capsys, "train", "slide", "--tracker", "tensorbord")
    assert r.code == 2
    assert r.err.strip().splitlines() == [
        "error: train.trackers[0]: unknown tracker 'tensorbord' (did you mean 'tensorboard'?); "
        "known: jsonl, tensorboard, wandb"]
    assert not (tmp_path / "motions" / "slide" / ".cache" / "runs").exists()


def test_missing_tensorboard_is_one_line_naming_the_extra(tmp_path, monkeypatch, host):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` fails; find_spec says None
    with pytest.raises(ConfigError) as exc:
        check_trackers(["jsonl", "tensorboard"], host)
    assert exc.value.message == ("train.trackers[1]: tracker 'tensorboard' needs tensorboard, which is not installed: "
                                 "pip install 'flashctl[tensorboard]'")
    assert exc.value.hint is None  # one line


def test_tensorboard_that_does_not_import_is_the_same_line(tmp_path, monkeypatch, host):
    pytest.importorskip("tensorboard")
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # installed, but the import fails
    config = tiny_config(tmp_path, train={"trackers": ["tensorboard"]})
    with pytest.raises(ConfigError, match=r"pip install 'flashctl\[tensorboard\]'$"):
        Trackers().open(config, host, TrackerRun("slide", "r1", tmp_path / "r1"))


def test_tensorboard_writes_scalars_and_the_preview_as_an_animated_gif(tmp_path, host):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tiny_config(tmp_path, train={"trackers": ["tensorboard"]})
    frames = np.random.default_rng(0).integers(0, 255, (4, 16, 24, 3), dtype=np.uint8)
    with Trackers() as trackers:
        trackers.open(config, host, TrackerRun("slide", "r1", tmp_path / "r1", {"train": {"steps": 2}}, 2))
        trackers.log(1, {"train/loss": 0.5})
        trackers.log(2, {"train/loss": 0.25})
        trackers.log_video("preview", frames, 8.0)
    events = EventAccumulator(str(tmp_path / "r1"), size_guidance={"images": 0})
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(1, 0.5), (2, 0.25)]
    (image,) = events.Images("preview")
    assert image.step == 2 and (image.width, image.height) == (24, 16)
    assert image.encoded_image_string.startswith(b"GIF8")


class _FakeWandb(types.ModuleType):
    def __init__(self) -> None:
        super().__init__("wandb")
        self.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
        self.calls: list[tuple] = []

    def init(self, **kwargs):
        self.calls.append(("init", kwargs))
        fake = self

        class Run:
            def log(self, data, step):
                fake.calls.append(("log", step, data))

            def finish(self):
                fake.calls.append(("finish",))

        return Run()

    def Video(self, path):  # noqa: N802 (wandb's name)
        return ("video", Path(path).name, Path(path).read_bytes()[:4])


@pytest.mark.parametrize("env, mode", [(None, "offline"), ("online", "online")])
def test_wandb_is_offline_unless_the_user_says_otherwise(tmp_path, monkeypatch, host, env, mode):
    fake = _FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    if env:
        monkeypatch.setenv("WANDB_MODE", env)
    else:
        monkeypatch.delenv("WANDB_MODE", raising=False)
    config = tiny_config(tmp_path, train={"trackers": ["wandb"]})
    with Trackers() as trackers:
        trackers.open(config, host, TrackerRun("slide", "r1", tmp_path / "r1", {"x": 1}, 1))
        trackers.log(1, {"train/loss": 0.5})
        trackers.log_video("preview", np.zeros((2, 8, 8, 3), np.uint8), 8.0)
    init = fake.calls[0][1]
    assert init["mode"] == mode and init["name"] == "r1" and init["group"] == "slide" and init["config"] == {"x": 1}
    assert fake.calls[1:] == [("log", 1, {"train/loss": 0.5}),
                              ("log", 1, {"preview": ("video", "preview-000001.gif", b"GIF8")}), ("finish",)]


def test_cli_tracker_maps_onto_train_trackers_and_tracker_dir(tmp_path, capsys):
    (tmp_path / "flashctl.toml").write_text(
        "[prepare]\nframes = 4\nsize = 32\nfps = 8.0\n[train]\nsteps = 2\n[animate]\nsteps = 2\n"
        "[options.backbone.animatediff]\nchannels = [16, 32]\nvae_channels = [8, 8, 8]\n")
    make_action(load_config())
    r = run(capsys, "train", "slide", "--tracker", "jsonl", "--tracker", "jsonl", "--tracker-dir", "logs")
    assert r.code == 0, r.err
    steps = [line["step"] for line in _lines(tmp_path / "logs") if "train/loss" in line.get("scalars", {})]
    assert steps == [1, 2]
