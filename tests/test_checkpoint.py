"""The one checkpoint format: a module's state with no scheduler or random state round-trips; older states load."""

import json

import pytest
import torch

from flashctl.errors import CheckpointError
from flashctl.pipeline.checkpoint import STATE, Checkpoint, check_fingerprint, load_checkpoint, save_checkpoint


def test_a_module_checkpoint_round_trips_and_a_state_without_seconds_loads(tmp_path):
    module = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(module.parameters())
    module(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    folder = tmp_path / "checkpoints" / "vae"  # the parent need not exist
    save_checkpoint(folder, Checkpoint(5, [0.5, 0.25], {"size": 16}, module.state_dict(), optimizer.state_dict(),
                                       seconds=1.5))
    loaded = load_checkpoint(folder)
    assert (loaded.step, loaded.losses, loaded.seconds, loaded.scheduler, loaded.rng) == (5, [0.5, 0.25], 1.5, {}, {})
    assert all(torch.equal(loaded.lora[k], v) for k, v in module.state_dict().items())
    again = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters())
    again.load_state_dict(loaded.optimizer)
    assert torch.equal(again.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])

    state = json.loads((folder / STATE).read_text())
    del state["seconds"]  # written before the field existed
    (folder / STATE).write_text(json.dumps(state))
    assert load_checkpoint(folder).seconds == 0.0


def test_a_caller_names_its_own_way_out(tmp_path):
    (tmp_path / STATE).write_text("{}")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path, hint="start another --out")
    assert info.value.hint == "start another --out"
    with pytest.raises(CheckpointError, match="made with size = 16, now 32") as info:
        check_fingerprint(tmp_path, {"size": 16}, {"size": 32}, hint="resume with the same size")
    assert info.value.hint == "resume with the same size"
