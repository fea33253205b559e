"""eval pipeline: fake animators over a real motion library and the real metric plugins."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from flashctl.config import FlashConfig
from flashctl.errors import ConfigError, MotionNotFoundError, UnknownComponentError
from flashctl.library import MotionLibrary
from flashctl.pipeline.evaluate import evaluate
from flashctl.plugins import build_host
from flashctl.progress import ListReporter

ALL = ["first-frame", "smoothness", "temporal-consistency", "motion-fidelity", "appearance"]
CLIPS, FRAMES, SIZE = 3, 6, 16


def clip(i: int) -> np.ndarray:
    """(F, S, S, 3) uint8: a square of colour i moving right over a flat background of colour i."""
    video = np.full((FRAMES, SIZE, SIZE, 3), (30 + 40 * i, 90, 160 - 30 * i), np.uint8)
    for t in range(FRAMES):
        video[t, 5:10, 1 + 2 * t:6 + 2 * t] = (230, 200 - 50 * i, 40 + 60 * i)
    return video


class Oracle:
    """Renders the ground truth: the clip whose first frame is the image."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[int, ...], int]] = []

    def render(self, image: np.ndarray, seed: int) -> np.ndarray:
        self.calls.append((image.shape, seed))
        return next(clip(i) for i in range(CLIPS) if np.array_equal(clip(i)[0], image))


class Frozen(Oracle):
    """Repeats the image: a perfect first frame and no motion at all."""

    def render(self, image: np.ndarray, seed: int) -> np.ndarray:
        self.calls.append((image.shape, seed))
        return np.repeat(image[None], FRAMES, axis=0)


class Exploding(Oracle):
    def render(self, image: np.ndarray, seed: int) -> np.ndarray:
        if self.calls:
            raise RuntimeError("renderer crashed half-way")
        return super().render(image, seed)


@pytest.fixture
def library(tmp_path):
    lib = MotionLibrary(tmp_path / "motions")
    (lib.path("wave")).mkdir(parents=True)
    (lib.path("wave") / "motion.toml").write_text('schema_version = 1\nname = "wave"\nprompt = "a person waving"\n')
    lib.save_frames("wave", np.stack([clip(i) for i in range(CLIPS)]), {"frames": FRAMES, "size": SIZE})
    return lib


def config(metrics=ALL, **sections) -> FlashConfig:
    return FlashConfig.model_validate({"eval": {"metrics": metrics}, "prepare": {"size": SIZE},
                                       "animate": {"seed": 7}, **sections})


def test_clips_are_scored_against_their_continuations(host, library):
    reporter = ListReporter()
    oracle = Oracle()
    result = evaluate(config(), library, "wave", host, animator=oracle, reporter=reporter)

    assert result.path == library.path("wave") / "eval" / "metrics.json"
    assert [shape for shape, _ in oracle.calls] == [(SIZE, SIZE, 3)] * CLIPS
    assert {seed for _, seed in oracle.calls} == {7}
    assert [s["reference"] for s in result.per_sample] == [f"clip {i}" for i in range(CLIPS)]
    for sample in result.per_sample:
        assert sample["scores"]["motion-fidelity/map_similarity"] == pytest.approx(1.0, abs=1e-6)
        assert sample["scores"]["first-frame/psnr"] == 100.0
    for key, mean in result.summary.items():
        assert mean == pytest.approx(np.mean([s["scores"][key] for s in result.per_sample]))

    events = [kind for kind, _ in reporter.events]
    assert ("start", ("eval", CLIPS)) in reporter.events
    assert events.count("advance") == CLIPS and "finish" in events

    record = json.loads(result.path.read_text())
    assert record["action"] == "wave" and record["references"] == "clips"
    assert record["summary"] == pytest.approx(result.summary)
    assert len(record["samples"]) == CLIPS
    assert record["config"]["eval"]["metrics"] == ALL
    specs = {s.name: s.traits for s in host.registry.specs("metric")}
    assert set(record["higher_is_better"]) == set(result.summary)
    for key, direction in record["higher_is_better"].items():
        name, sub = key.split("/", 1)
        assert direction == specs[name].direction(sub)  # True, False, None or "near 1"


def test_a_frozen_video_scores_worse_on_motion_only(host, library):
    good = evaluate(config(), library, "wave", host, animator=Oracle(), out_dir=library.root / "good").summary
    still = evaluate(config(), library, "wave", host, animator=Frozen(), out_dir=library.root / "still").summary
    assert good["motion-fidelity/map_similarity"] > 0.9 > 0.1 > still["motion-fidelity/map_similarity"]
    assert still["first-frame/ssim"] == pytest.approx(good["first-frame/ssim"]) == pytest.approx(1.0, abs=1e-5)
    # with a target, consistency is relative to the real clip: stillness no longer wins it
    assert still["temporal-consistency/change_ratio"] < 0.1
    assert good["temporal-consistency/change_ratio"] == pytest.approx(1.0, abs=0.1)
    assert (library.root / "good" / "metrics.json").is_file() and (library.root / "still" / "metrics.json").is_file()


def test_per_sample_noise_gives_each_reference_its_own_seed(host, library):
    seeds = {}
    for seed in (7, 8):
        oracle = Oracle()
        result = evaluate(config(eval={"metrics": ALL, "noise": "per-sample"}, animate={"seed": seed}), library,
                          "wave", host, animator=oracle, out_dir=library.root / f"s{seed}")
        seeds[seed] = [used for _, used in oracle.calls]
        assert [s["seed"] for s in result.per_sample] == seeds[seed]  # recorded per reference
        assert len(set(seeds[seed])) == CLIPS  # shared: all 7 (the test above)
    assert not set(seeds[7]) & set(seeds[8])  # seed 8 is not seed 7 shifted by one reference


def test_images_skip_metrics_that_need_a_target(host, library, tmp_path):
    paths = []
    for i, (w, h) in enumerate([(40, 24), (20, 20)]):
        paths.append(tmp_path / f"ref{i}.png")
        Image.fromarray(np.full((h, w, 3), 60 * (i + 1), np.uint8)).save(paths[-1])
    reporter, frozen = ListReporter(), Frozen()
    result = evaluate(config(), library, "wave", host, images=paths, animator=frozen, reporter=reporter)

    assert [shape for shape, _ in frozen.calls] == [(SIZE, SIZE, 3)] * 2  # cropped and resized to the motion
    assert [s["reference"] for s in result.per_sample] == [str(p) for p in paths]
    assert not any(k.startswith("motion-fidelity/") for k in result.summary)
    assert "first-frame/psnr" in result.summary and "appearance/histogram_mean" in result.summary
    assert any("motion-fidelity" in n for n in reporter.notes("warning"))
    assert json.loads(result.path.read_text())["references"] == "images"


def test_a_failed_run_keeps_the_previous_metrics(host, library):
    first = evaluate(config(), library, "wave", host, animator=Oracle())
    before = first.path.read_bytes()
    with pytest.raises(RuntimeError, match="half-way"):
        evaluate(config(["first-frame"]), library, "wave", host, animator=Exploding())
    assert first.path.read_bytes() == before
    assert [p.name for p in first.path.parent.iterdir()] == ["metrics.json"]


def test_bad_input_fails_before_rendering(host, library):
    oracle = Oracle()
    with pytest.raises(UnknownComponentError, match=r"eval\.metrics\[1\].*'ssim'"):
        evaluate(config(["first-frame", "ssim"]), library, "wave", host, animator=oracle)
    bad_window = config(options={"metric": {"first-frame": {"ssim_window": 8}}})
    with pytest.raises(ConfigError, match=r"options\.metric\.first-frame\.ssim_window"):
        evaluate(bad_window, library, "wave", host, animator=oracle)
    with pytest.raises(MotionNotFoundError, match="'golf'"):
        evaluate(config(), library, "golf", host, animator=oracle)
    assert oracle.calls == []
    assert not (library.path("wave") / "eval").exists()


def test_held_out_clips_are_references_and_ground_truth(tmp_path):
    """--clips: each clip's frame 0 is animated, the clip itself is the target for motion metrics."""
    from media import make_clip

    from flashctl.config import load_config
    from flashctl.library import MotionLibrary
    from flashctl.pipeline.evaluate import evaluate

    (tmp_path / "flashctl.toml").write_text('[prepare]\nframes = 6\nsize = 16\n[eval]\nmetrics = ["motion-fidelity"]\n')
    config = load_config()
    library = MotionLibrary(config.library_path())
    (library.root / "wave").mkdir(parents=True)
    (library.root / "wave" / "motion.toml").write_text('name = "wave"\nprompt = "x"\n')
    held = tmp_path / "held"
    held.mkdir()
    make_clip(held / "a.mp4", frames=12, size=(32, 32), fps=8)

    class Oracle:  # returns the real continuation: perfect motion
        def render(self, image, seed):
            from flashctl.pipeline.prepare import normalise_clips
            from flashctl.progress import NullReporter

            return normalise_clips([held / "a.mp4"], config, [], NullReporter())[0]  # (F, S, S, 3)

    class Frozen:
        def render(self, image, seed):
            import numpy as np

            return np.repeat(image[None], 6, axis=0)

    good = evaluate(config, library, "wave", build_host(), clips=[held], animator=Oracle(), out_dir=tmp_path / "g")
    still = evaluate(config, library, "wave", build_host(), clips=[held], animator=Frozen(), out_dir=tmp_path / "s")
    assert good.per_sample[0]["reference"].endswith("a.mp4")
    assert good.summary["motion-fidelity/map_similarity"] > 0.99 > still.summary.get("motion-fidelity/map_similarity", 0)


AGGREGATE_PLUGIN = '''
from flashctl import hookimpl


class Count:
    def __init__(self):
        self.n = 0

    def __call__(self, generated, *, reference, target=None, prompt=None):
        self.n += 1
        self.prompt = prompt
        return {}

    def compute(self):
        return {"samples": float(self.n), "prompt_seen": float(self.prompt == "a person waving")}


@hookimpl
def register_metrics(register):
    register("count", lambda options, ctx: Count(), higher_is_better=True, aggregate=True, accepts_prompt=True)
'''


def test_aggregate_metrics_score_the_whole_set_and_get_the_prompt(tmp_path):
    """A metric with aggregate=True (e.g. FVD) reports once, from compute(), after every sample updated it."""
    import numpy as np

    from flashctl.config import load_config
    from flashctl.library import MotionLibrary
    from flashctl.pipeline.evaluate import evaluate
    from flashctl.plugins import host_for

    (tmp_path / "count.py").write_text(AGGREGATE_PLUGIN)
    (tmp_path / "flashctl.toml").write_text('[prepare]\nframes = 4\nsize = 16\n[eval]\nmetrics = ["count"]\n'
                                            '[plugins]\npaths = ["count.py"]\n')
    config = load_config()
    library = MotionLibrary(config.library_path())
    (library.root / "wave").mkdir(parents=True)
    (library.root / "wave" / "motion.toml").write_text('name = "wave"\nprompt = "a person waving"\n')
    images = []
    for i in range(3):
        from PIL import Image

        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(tmp_path / f"r{i}.png")
        images.append(tmp_path / f"r{i}.png")

    class Still:
        def render(self, image, seed):
            return np.repeat(image[None], 4, axis=0)  # (F, H, W, 3)

    result = evaluate(config, library, "wave", host_for(config), images=images, animator=Still(), out_dir=tmp_path / "e")
    assert result.summary["count/samples"] == 3.0 and result.summary["count/prompt_seen"] == 1.0
    assert result.higher_is_better["count/samples"] is True
