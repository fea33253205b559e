"""FSDP2 training pieces (flashctl.model.fsdp) on 2 CPU processes (gloo), launched with the shipped
docs/accelerate/fsdp.yaml: the frozen base and the LoRA are sharded, one step equals one unsharded step on the
mean of both processes' gradients, and the gathered LoRA loads into an unsharded model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flashctl.errors import ConfigError
from flashctl.model import fsdp
from test_launch import free_port

ROOT = Path(__file__).resolve().parents[1]

STEP = f"""\
import json
import sys

import torch
from accelerate import Accelerator

sys.path.insert(0, {str(ROOT / "tests")!r})
from motion_kit import synthetic_clips, tiny_config
from flashctl.context import context_for
from flashctl.model import fsdp
from flashctl.model.motion_model import MotionModel
from flashctl.plugins import build_host
from flashctl.video import frames_to_tensor

assert fsdp.fsdp_requested()
fsdp.check_fsdp(0, False)
accelerator = Accelerator(cpu=True)  # accelerate itself: plain gloo on CPU; flashctl shards
rank, host = accelerator.process_index, build_host()
config = tiny_config(__import__("pathlib").Path.cwd())


def motion_model():
    torch.manual_seed(0)  # the same base and LoRA init in every process, as train does
    model = MotionModel.build(config, host, context_for(config, host), training=True)
    model.add_motion(4, 4.0)
    model.backbone.unet.train()
    return model


model = motion_model()
clips = torch.stack([frames_to_tensor(c) for c in synthetic_clips(2)])  # (N, F, 3, S, S)
latents = torch.cat([model.backbone.encode_video(c[None]) for c in clips])  # (N, F, c, h, w)
emb = model.backbone.encode_prompt(["a square slides right"])  # (1, seq, dim)
before = {{n: p.detach().clone() for n, p in model.backbone.unet.named_parameters() if p.requires_grad}}
params = fsdp.shard_denoiser(model.backbone.unet)
local, total = fsdp.local_share(model.backbone.unet)
optimizer = torch.optim.SGD(params, lr=1.0)  # the update is the gradient: compares gradients directly
model.training_loss(latents, emb, torch.Generator().manual_seed(rank)).backward()
optimizer.step()
trained = fsdp.gather_trainable(model.backbone.unet)
record = {{"local": local, "total": total, "trainable": len(params)}}
if rank == 0:  # one unsharded process stepping on the mean of both processes' gradients
    reference = motion_model()
    unet = reference.backbone.unet
    weights = [p for p in unet.parameters() if p.requires_grad]
    grads = []
    for seed in (0, 1):
        unet.zero_grad()
        reference.training_loss(latents, emb, torch.Generator().manual_seed(seed)).backward()
        grads.append([p.grad.clone() for p in weights])
    for p, first, second in zip(weights, *grads):
        p.grad = (first + second) / 2
    torch.optim.SGD(weights, lr=1.0).step()
    expected = {{n: p.detach() for n, p in unet.named_parameters() if p.requires_grad}}
    fresh = motion_model()
    fsdp.load_trainable(fresh.backbone.unet, trained)
    record.update(
        keys=sorted(trained) == sorted(expected),
        worst=max(float((trained[k] - expected[k]).abs().max()) for k in expected),
        step=max(float((expected[k] - before[k]).abs().max()) for k in expected),
        moved=sum(not torch.equal(trained[k], before[k]) for k in trained), tensors=len(trained),
        loaded=all(torch.equal(p, trained[n]) for n, p in fresh.backbone.unet.named_parameters() if p.requires_grad))
with open(f"fsdp-{{rank}}.json", "w") as out:
    json.dump(record, out)
"""


@pytest.fixture(scope="module")
def stepped(tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdp")
    (root / "step.py").write_text(STEP)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASHCTL_", "ACCELERATE_", "FSDP_"))}
    env.update(OMP_NUM_THREADS="1", HOME=str(root), HF_HOME=str(root / ".hf"), HF_HUB_OFFLINE="1")
    accelerate = Path(sys.executable).parent / "accelerate"
    command = [str(accelerate), "launch", "--config_file", str(ROOT / "docs" / "accelerate" / "fsdp.yaml"),
               "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(free_port()), "step.py"]
    run = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return [json.loads((root / f"fsdp-{rank}.json").read_text()) for rank in (0, 1)]


def test_the_base_and_the_lora_are_sharded_over_the_processes(stepped):
    for record in stepped:
        assert record["local"] < 0.55 * record["total"]  # each holds about half (uneven rows round up)
    assert stepped[0]["local"] + stepped[1]["local"] == stepped[0]["total"]
    assert stepped[0]["trainable"] == stepped[1]["trainable"] > 0


def test_a_sharded_step_is_the_unsharded_step_on_the_mean_gradient(stepped):
    record = stepped[0]
    assert record["keys"] and record["loaded"]
    assert record["moved"] > 0  # the step changed the LoRA (lora_B starts at zero, so only it moves on step 1)
    # FSDP reduce-scatters the gradients (summed in another order than (g0 + g1) / 2): float32 rounding only,
    # about 1e-7 of the step (measured 1.2e-9 against a largest step of 6.4e-3)
    assert record["worst"] <= 1e-5 * record["step"]


def test_fsdp1_configs_and_checkpoints_are_refused(monkeypatch):
    monkeypatch.setenv("FSDP_VERSION", "1")
    with pytest.raises(ConfigError, match="fsdp_version = 1"):
        fsdp.check_fsdp(0, False)
    monkeypatch.setenv("FSDP_VERSION", "2")
    fsdp.check_fsdp(0, False)
    with pytest.raises(ConfigError, match="checkpoint_every = 5 and --resume"):
        fsdp.check_fsdp(5, True)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert fsdp.fsdp_requested()
