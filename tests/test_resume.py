"""``train --resume``: N steps straight == k steps, a crash, a resume; what a checkpoint holds; refusals."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from flashctl.errors import CheckpointError
from flashctl.library import MotionLibrary
from flashctl.model import flash
from flashctl.pipeline.train import train
from flashctl.progress import ListReporter
from motion_kit import make_action, synthetic_clips, tiny_config

PLAIN = {"strong_augment": False}
MAM = {"strong_augment": True, "mam": {"motion_align": True, "correspondence_align": True},
       "augmentations": ["color-jitter", "channel-shuffle", "invert"]}  # random draws per clip from the generator
WARMUP = {"warmup_steps": 3}  # the learning rate changes across the resume point: the scheduler state matters
CHECKPOINT_FILES = {"state.json", "lora.safetensors", "optimizer.safetensors", "rng.safetensors"}


class Crash(Exception):
    """Stands in for a killed process."""


def crash_after(monkeypatch, calls: int) -> None:
    """Make ``flash.training_loss`` raise on its call number ``calls + 1`` (one call per micro-batch)."""
    real, seen = flash.training_loss, []

    def crashing(*args, **kwargs):
        seen.append(1)
        if len(seen) > calls:
            raise Crash("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(flash, "training_loss", crashing)


def trained(library, action="slide") -> tuple[dict, list[float]]:
    """The saved motion's LoRA tensors and loss history."""
    return load_file(str(library.weights_dir(action) / "lora.safetensors")), library.provenance(action)["losses"]


def assert_same_motion(a: tuple[dict, list[float]], b: tuple[dict, list[float]]) -> None:
    (lora_a, losses_a), (lora_b, losses_b) = a, b
    assert lora_a.keys() == lora_b.keys()
    assert all(torch.equal(lora_a[k], lora_b[k]) for k in lora_a), "LoRA tensors differ"
    assert losses_a == losses_b


def straight_run(root, settings, host, steps=4):
    config = tiny_config(root, train=settings)
    library = make_action(config)
    train(config, library, "slide", host, steps=steps)
    return trained(library)


def snapshot(folder, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Relative path -> bytes of every file under ``folder`` except those under the ``skip`` prefixes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.relative_to(folder).as_posix().startswith(skip)}


def test_crash_keeps_the_live_motion_and_resume_matches_an_uninterrupted_run(tmp_path, host, monkeypatch):
    settings = {**PLAIN, **WARMUP, "checkpoint_every": 1}
    config = tiny_config(tmp_path / "run", train=settings)
    library = make_action(config)
    train(config, library, "slide", host, steps=1)  # the live motion a retrain must not touch until it is done
    live = snapshot(library.path("slide"), skip=(".cache/",))

    crash_after(monkeypatch, 2)  # steps 1 and 2 complete (checkpointed), step 3 crashes
    with pytest.raises(Crash):
        train(config, library, "slide", host, steps=4)
    assert snapshot(library.path("slide"), skip=(".cache/",)) == live
    checkpoint = library.cache_dir("slide") / "checkpoint"
    assert {p.name for p in checkpoint.iterdir()} == CHECKPOINT_FILES  # safetensors + JSON, nothing pickled
    state = json.loads((checkpoint / "state.json").read_text())
    assert state["step"] == 2 and len(state["losses"]) == 2
    assert state["scheduler"]["last_epoch"] == 2
    rng = load_file(str(checkpoint / "rng.safetensors"))
    assert set(rng) == {"generator", "torch"} and rng["generator"].shape[0] == 1  # one row per process

    monkeypatch.undo()
    reporter = ListReporter()
    train(config, library, "slide", host, steps=4, resume=True, reporter=reporter)
    assert any("resuming 'slide' from step 2" in n for n in reporter.notes())
    assert library.provenance("slide")["resumed_from_step"] == 2
    assert not checkpoint.exists()  # cleared once the motion is saved
    assert_same_motion(trained(library), straight_run(tmp_path / "straight", {**PLAIN, **WARMUP}, host))


@pytest.mark.parametrize("settings", [{**MAM, **WARMUP}, {**MAM, **WARMUP, "grad_accum": 2}], ids=["mam", "mam-accum2"])
def test_resume_is_bit_exact(tmp_path, host, monkeypatch, settings):
    config = tiny_config(tmp_path / "run", train={**settings, "checkpoint_every": 2})
    library = make_action(config)
    crash_after(monkeypatch, 2 * settings.get("grad_accum", 1) + 1)  # crash inside step 3, after checkpoint 2
    with pytest.raises(Crash):
        train(config, library, "slide", host, steps=4)
    monkeypatch.undo()
    train(config, library, "slide", host, steps=4, resume=True)
    assert library.provenance("slide")["resumed_from_step"] == 2
    assert_same_motion(trained(library), straight_run(tmp_path / "straight", settings, host))


def test_resume_may_train_longer_than_the_interrupted_run(tmp_path, host, monkeypatch):
    config = tiny_config(tmp_path / "run", train={**PLAIN, **WARMUP, "checkpoint_every": 1})
    library = make_action(config)
    crash_after(monkeypatch, 1)
    with pytest.raises(Crash):
        train(config, library, "slide", host, steps=2)
    monkeypatch.undo()
    train(config, library, "slide", host, steps=3, resume=True)  # the step count is not part of the fingerprint
    assert_same_motion(trained(library), straight_run(tmp_path / "straight", {**PLAIN, **WARMUP}, host, steps=3))


def test_resume_without_a_checkpoint_notes_it_and_starts_from_step_zero(tmp_path, host):
    config = tiny_config(tmp_path, train=PLAIN)
    library = make_action(config)
    reporter = ListReporter()
    train(config, library, "slide", host, steps=1, resume=True, reporter=reporter)
    assert any("no checkpoint for 'slide'" in n and "starting from step 0" in n for n in reporter.notes("warning"))
    assert library.provenance("slide")["resumed_from_step"] is None


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory, host):
    """A project whose action crashed in step 2 of 3, leaving a checkpoint at step 1."""
    root = tmp_path_factory.mktemp("checkpointed")
    config = tiny_config(root, train={**PLAIN, "checkpoint_every": 1})
    library = make_action(config)
    with pytest.MonkeyPatch.context() as mp:
        crash_after(mp, 1)
        with pytest.raises(Crash):
            train(config, library, "slide", host, steps=3)
    return root


@pytest.fixture
def project(tmp_path, checkpointed):
    shutil.copytree(checkpointed / "motions", tmp_path / "motions")
    config = tiny_config(tmp_path, train={**PLAIN, "checkpoint_every": 1})
    library = MotionLibrary(config.library_path())
    return config, library, library.cache_dir("slide") / "checkpoint"


@pytest.mark.parametrize("change, message", [
    ({"train": {**PLAIN, "checkpoint_every": 1, "lr": 1e-3}}, r"made with train\.lr = 0\.003, now 0\.001"),
    ({"train": {**PLAIN, "checkpoint_every": 1, "seed": 7}}, r"made with train\.seed = 0, now 7"),
    ({"options": {"backbone": {"animatediff": {"channels": [16, 32]}}}}, r"made with backbone\.geometry\."),
])
def test_resume_with_other_settings_is_refused_and_keeps_the_checkpoint(project, host, change, message):
    config, library, checkpoint = project
    before = snapshot(checkpoint)
    other = tiny_config(config.root(), **change)
    with pytest.raises(CheckpointError, match=message) as info:
        train(other, library, "slide", host, steps=3, resume=True)
    assert "drop --resume" in info.value.hint
    assert snapshot(checkpoint) == before and not library.is_trained("slide")


def test_resume_with_other_clips_is_refused_then_succeeds_with_the_original_ones(project, host):
    config, library, checkpoint = project
    original = library.load_frames("slide")
    library.save_frames("slide", synthetic_clips(2, seed=1), original[1])
    with pytest.raises(CheckpointError, match=r"made with frames_sha256 = '[0-9a-f]+"):
        train(config, library, "slide", host, steps=3, resume=True)
    library.save_frames("slide", *original)
    train(config, library, "slide", host, steps=3, resume=True)
    assert library.provenance("slide")["resumed_from_step"] == 1


def test_resume_past_the_requested_steps_is_refused(project, host):
    config, library, checkpoint = project
    with pytest.raises(CheckpointError, match=r"at step 1, but training stops at step 1") as info:
        train(config, library, "slide", host, steps=1, resume=True)
    assert "--steps greater than 1" in info.value.hint and (checkpoint / "state.json").is_file()


def test_unreadable_checkpoint_is_refused_naming_the_file(project, host):
    config, library, checkpoint = project
    (checkpoint / "optimizer.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match=r"optimizer\.safetensors: unreadable checkpoint file"):
        train(config, library, "slide", host, steps=3, resume=True)
    assert not library.is_trained("slide")


def test_a_fresh_run_warns_that_it_replaces_the_checkpoint(project, host):
    config, library, checkpoint = project
    reporter = ListReporter()
    train(config, library, "slide", host, steps=2, reporter=reporter)
    assert any("has a checkpoint" in n and "--resume" in n for n in reporter.notes("warning"))
    assert not checkpoint.exists()
