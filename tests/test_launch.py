"""``accelerate launch`` with 2 CPU processes (gloo): one motion saved, replicas in sync, per-process draws, resume.

The launch command is the one a user types; ``--multi_gpu`` picks accelerate's torchrun launcher, and
``runtime.device = "cpu"`` makes the processes use gloo (``--cpu`` would pick accelerate's mpirun
launcher, which without a hostfile runs a single process).
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from flashctl.config import load_config
from flashctl.errors import CheckpointError
from flashctl.library import MotionLibrary
from flashctl.pipeline.train import train
from motion_kit import make_action

PROJECT = """\
[prepare]
frames = 4
size = 32
fps = 8.0

[train]
lr = 3e-3
strong_augment = true
augmentations = ["color-jitter", "invert"]
detail_decoder = false
checkpoint_every = 1

[animate]
steps = 2
formats = ["gif"]

[train.mam]
motion_align = true
correspondence_align = true
"""  # MAM on

CRASH = """\
import sys

from flashctl.cli import main
from flashctl.model import flash

real, calls = flash.training_loss, []


def crashing(*args, **kwargs):
    calls.append(1)
    if len(calls) > 1:  # step 1 completes and is checkpointed, step 2 crashes in every process
        raise RuntimeError("simulated crash")
    return real(*args, **kwargs)


flash.training_loss = crashing
main(sys.argv[1:])
"""


def project(root: Path) -> MotionLibrary:
    root.mkdir(parents=True, exist_ok=True)
    (root / "flashctl.toml").write_text(PROJECT)
    return make_action(load_config(root / "flashctl.toml"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(root: Path, *program: str) -> subprocess.CompletedProcess:
    """``accelerate launch`` 2 processes in ``root`` with flags only (no accelerate config file is read)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASHCTL_", "ACCELERATE_"))}
    env.update(OMP_NUM_THREADS="1", HOME=str(root), HF_HOME=str(root / ".hf"), HF_HUB_OFFLINE="1")
    accelerate = Path(sys.executable).parent / "accelerate"
    command = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
               *program]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """A 2-process ``flashctl train slide --steps 2`` in a fresh project."""
    root = tmp_path_factory.mktemp("launched")
    library = project(root)
    run = launch(root, "-m", "flashctl", "train", "slide", "--steps", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    return library


def test_two_processes_save_one_motion_with_replicas_in_sync(launched, tmp_path, host):
    folder = launched.path("slide")
    assert launched.is_trained("slide") and launched.verify("slide") == []
    assert len(list((folder / ".versions").iterdir())) == 1  # saved once: the second process saved nothing
    assert not any((launched.root / ".staging").glob("*"))
    assert not (launched.cache_dir("slide") / "checkpoint").exists()
    prov = launched.provenance("slide")
    assert prov["num_processes"] == 2 and prov["process_seeds"] == [0, 1]
    first, second = prov["replica_lora_sha256"]
    assert first == second  # the averaged gradients kept both replicas identical

    # each process drew its own clips, augmentations and noise (seed + process index) and the loss is their mean:
    # step 1 starts from the same weights, so it is the mean of 1-process runs seeded 0 and 1
    single = {}
    for seed in (0, 1):
        overrides = [f"train.seed={seed}", f"library.path={tmp_path / str(seed)}"]
        config = load_config(launched.root.parent / "flashctl.toml", overrides)
        library = make_action(config)
        train(config, library, "slide", host, steps=2 - seed)
        single[seed] = library
    losses = {seed: lib.provenance("slide")["losses"] for seed, lib in single.items()}
    assert prov["losses"][0] == pytest.approx((losses[0][0] + losses[1][0]) / 2, rel=1e-6)
    assert losses[0][0] != losses[1][0]
    # ... and so the 2-process motion is not the 1-process one with the same seed
    two, one = (load_file(str(lib.weights_dir("slide") / "lora.safetensors")) for lib in (launched, single[0]))
    assert two.keys() == one.keys() and not all(torch.equal(two[k], one[k]) for k in two)


def test_resume_across_two_processes_is_bit_exact(launched, tmp_path, host):
    library = project(tmp_path)
    (tmp_path / "crash.py").write_text(CRASH)
    crashed = launch(tmp_path, "crash.py", "train", "slide", "--steps", "2")
    assert crashed.returncode != 0 and "simulated crash" in crashed.stderr
    assert not library.is_trained("slide")
    checkpoint = library.cache_dir("slide") / "checkpoint"
    rng = load_file(str(checkpoint / "rng.safetensors"))
    assert rng["generator"].shape[0] == 2 and not torch.equal(*rng["generator"])  # one row per process

    with pytest.raises(CheckpointError, match=r"num_processes = 2, now 1"):
        train(load_config(tmp_path / "flashctl.toml"), library, "slide", host, steps=2, resume=True)

    resumed = launch(tmp_path, "-m", "flashctl", "train", "slide", "--steps", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming 'slide' from step 1" in resumed.stderr
    prov, straight = library.provenance("slide"), launched.provenance("slide")
    assert prov["resumed_from_step"] == 1 and prov["losses"] == straight["losses"]
    assert prov["replica_lora_sha256"] == straight["replica_lora_sha256"]
    ours, theirs = (load_file(str(lib.weights_dir("slide") / "lora.safetensors")) for lib in (library, launched))
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)



def test_fsdp_training_saves_the_motion_data_parallel_training_gives(launched, tmp_path):
    """accelerate launch with docs/accelerate/fsdp.yaml on 2 CPU processes: the denoiser sharded (FSDP2 on gloo),
    one motion saved by the main process, the same losses as the data-parallel launch to float32 rounding."""
    library = project(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASHCTL_", "ACCELERATE_", "FSDP_"))}
    env.update(OMP_NUM_THREADS="1", HOME=str(tmp_path), HF_HOME=str(tmp_path / ".hf"), HF_HUB_OFFLINE="1")
    yaml = Path(__file__).resolve().parents[1] / "docs" / "accelerate" / "fsdp.yaml"
    command = [str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file", str(yaml),
               "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(free_port()),
               "-m", "flashctl", "train", "slide", "--steps", "2", "--set", "train.checkpoint_every=0"]
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert library.is_trained("slide") and library.verify("slide") == []
    assert len(list((library.path("slide") / ".versions").iterdir())) == 1
    ours, theirs = library.provenance("slide"), launched.provenance("slide")
    assert ours["num_processes"] == 2 and ours["losses"] == pytest.approx(theirs["losses"], rel=1e-6)
    a, b = (load_file(str(lib.weights_dir("slide") / "lora.safetensors")) for lib in (library, launched))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-3) for k in a)  # AdamW on ~0 gradients
