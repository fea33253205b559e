"""A motion's LoRA in stock diffusers: AnimateDiffPipeline + load_lora_weights gives flashctl's U-Net output."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import AnimateDiffPipeline, AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from flashctl.context import BuildContext
from flashctl.errors import WeightsNotFoundError
from flashctl.model.cross_frame import CrossFrameAttnProcessor
from flashctl.model.lora import add_motion_lora, load_motion_lora, lora_state_dict
from flashctl.model.motion_files import CONFIG_FILE, LORA_FILE, export_lora_for_diffusers, load_lora, save_lora

F, RANK, ALPHA = 3, 4, 8.0  # frames; alpha != rank, so the export's scale matters


def _backbone(host):
    return host.registry.create("backbone", "animatediff", {}, BuildContext())


@pytest.fixture(scope="module")
def saved(host, tmp_path_factory):
    """The tiny base dumped with save_pretrained, and a motion's weights/ with a non-zero LoRA, as train saves them."""
    root = tmp_path_factory.mktemp("interop")
    backbone = _backbone(host)
    backbone.save_pretrained(root / "base")
    add_motion_lora(backbone, RANK, ALPHA)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in sorted(backbone.unet.named_parameters()):
            if ".lora_B." in name:  # trained LoRA stand-in: B = 0 would make the test vacuous
                p.copy_(torch.randn(p.shape, generator=generator) * 0.2)
    weights = root / "weights"
    weights.mkdir()
    save_lora(weights / LORA_FILE, lora_state_dict(backbone), {"format": "flashctl-motion-lora"})
    (weights / CONFIG_FILE).write_text(json.dumps({"lora": {"file": LORA_FILE, "rank": RANK, "alpha": ALPHA}}))
    return root


def _inputs(text_dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(1, F, 4, 8, 8, generator=g)  # (B, F, c, h, w)
    prompt = torch.randn(1, 77, text_dim, generator=g)  # (B, seq, dim)
    return latents, torch.tensor([400]), prompt


def _stock_pipeline(base) -> AnimateDiffPipeline:
    return AnimateDiffPipeline(
        vae=AutoencoderKL.from_pretrained(base / "vae"), text_encoder=CLIPTextModel.from_pretrained(base / "text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(base / "tokenizer"),
        unet=UNet2DConditionModel.from_pretrained(base / "unet"),
        motion_adapter=MotionAdapter.from_pretrained(base / "motion_adapter"),
        scheduler=DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False))


def _stock_denoise(pipe, latents, t, prompt) -> torch.Tensor:
    """What AnimateDiffPipeline's loop calls: (B, c, F, h, w) latents, text repeated per frame."""
    sample = latents.permute(0, 2, 1, 3, 4)  # (B, c, F, h, w)
    out = pipe.unet(sample, t, encoder_hidden_states=prompt.repeat_interleave(latents.shape[1], dim=0)).sample
    return out.permute(0, 2, 1, 3, 4)  # (B, F, c, h, w)


def _cross_frame(unet, names, frames: int) -> None:
    unet.set_attn_processor({n: CrossFrameAttnProcessor(frames) if n in names else p
                             for n, p in unet.attn_processors.items()})


def _lora_layers(unet) -> int:
    return sum(1 for n, _ in unet.named_modules() if n.endswith(".lora_A"))


def test_exported_lora_in_stock_pipeline_matches_flashctl(host, saved, tmp_path):
    ours = _backbone(host)
    state = load_lora(saved / "weights" / LORA_FILE)
    load_motion_lora(ours, state, RANK, ALPHA, source="lora.safetensors")
    latents, t, prompt = _inputs(ours.text_encoder.config.hidden_size)
    with torch.no_grad():
        expected = ours.denoise(latents, t, prompt)  # (B, F, c, h, w)

    exported = export_lora_for_diffusers(saved / "weights", tmp_path / "motion_diffusers.safetensors")
    assert all(k.startswith("unet.") for k in load_lora(exported))
    pipe = _stock_pipeline(saved / "base")
    _cross_frame(pipe.unet, ours.spatial_attention, F)  # flashctl's spatial attention, on the stock U-Net
    with torch.no_grad():
        without = _stock_denoise(pipe, latents, t, prompt)
    pipe.load_lora_weights(str(exported), adapter_name="motion")
    _cross_frame(pipe.unet, ours.spatial_attention, F)  # peft wrapping keeps processors; set again to be sure
    with torch.no_grad():
        got = _stock_denoise(pipe, latents, t, prompt)

    assert _lora_layers(pipe.unet) == _lora_layers(ours.unet) > 0  # every LoRA layer landed
    assert (without - expected).abs().max() > 1e-3  # the LoRA changes the output...
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)  # ...exactly as flashctl applies it


def test_single_frame_stock_attention_matches(host, saved, tmp_path):
    """With one frame, cross-frame attention is the stock one: no processor swap needed."""
    ours = _backbone(host)
    load_motion_lora(ours, load_lora(saved / "weights" / LORA_FILE), RANK, ALPHA, source="lora.safetensors")
    latents, t, prompt = _inputs(ours.text_encoder.config.hidden_size)
    latents = latents[:, :1]
    exported = export_lora_for_diffusers(saved / "weights", tmp_path / "motion.safetensors")
    pipe = _stock_pipeline(saved / "base")
    pipe.load_lora_weights(str(exported))
    with torch.no_grad():
        torch.testing.assert_close(_stock_denoise(pipe, latents, t, prompt), ours.denoise(latents, t, prompt),
                                   atol=1e-5, rtol=1e-4)


def test_export_refuses_a_folder_without_weights_and_keeps_old_output(tmp_path):
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"previous export")
    with pytest.raises(WeightsNotFoundError, match="config.json"):
        export_lora_for_diffusers(tmp_path / "nothing", out)
    assert out.read_bytes() == b"previous export"


# -- flashctl export: the CLI over a library version; ComfyUI's key convention ---------------------

def _library_with_motion(saved, root):
    """A library whose action 'wave' has the saved weights as its current version, hashed by provenance."""
    from flashctl.library import MotionLibrary
    from flashctl.manifest import MotionManifest
    from flashctl.model.motion_files import file_hashes, write_json

    library = MotionLibrary(root / "motions")
    library.path("wave").mkdir(parents=True)
    library.write_manifest("wave", MotionManifest(name="wave", prompt="a person waving"))
    with library.stage("wave") as stage:
        (stage / "weights").mkdir()
        for name in (CONFIG_FILE, LORA_FILE):
            (stage / "weights" / name).write_bytes((saved / "weights" / name).read_bytes())
        write_json(stage / "provenance.json", {"run_id": "20260101T000000000000Z-abcd", "files": file_hashes(stage)})
    return library


def test_cli_export_diffusers_loads_in_stock_diffusers_with_no_missing_or_unexpected_keys(saved, tmp_path, capsys):
    from peft import get_peft_model_state_dict
    from safetensors import safe_open

    from cli_kit import run
    from flashctl import __version__
    from flashctl.model.motion_files import geometry_sha256

    library = _library_with_motion(saved, tmp_path)
    out = tmp_path / "wave.safetensors"
    result = run(capsys, "export", "wave", "--format", "diffusers", "-o", out, "--library", library.root)
    assert result.code == 0, result.err
    assert result.out == f"{out}\n"
    with safe_open(str(out), framework="pt") as fh:
        meta = fh.metadata()
    assert meta["flashctl_action"] == "wave" and meta["flashctl_run_id"] == "20260101T000000000000Z-abcd"
    assert meta["flashctl_export_format"] == "diffusers" and meta["flashctl_version"] == __version__
    assert meta["flashctl_geometry_sha256"] == geometry_sha256({})  # this stand-in config.json records no geometry

    exported = load_lora(out)
    pipe = _stock_pipeline(saved / "base")
    pipe.load_lora_weights(str(out), adapter_name="motion")
    loaded = get_peft_model_state_dict(pipe.unet, adapter_name="motion")  # every LoRA tensor the U-Net now holds
    assert {f"unet.{k}" for k in loaded} == set(exported)  # nothing missing, nothing unexpected
    for key, tensor in loaded.items():
        torch.testing.assert_close(tensor, exported[f"unet.{key}"], rtol=0, atol=0)

    again = run(capsys, "export", "wave", "--format", "diffusers", "-o", out, "--library", library.root)
    assert again.code == 2 and "already exists" in again.err and "--overwrite" in again.err
    assert run(capsys, "export", "wave", "--format", "diffusers", "-o", out, "--overwrite",
               "--library", library.root).code == 0


def test_comfyui_names_follow_comfyui_and_convert_back_exactly(host, saved):
    from flashctl.model.motion_files import comfyui_to_lora, lora_to_comfyui

    state = load_lora(saved / "weights" / LORA_FILE)
    comfy = lora_to_comfyui(state, ALPHA)
    base_unet = _backbone(host).unet  # no LoRA: the module names ComfyUI's key map is built from
    # comfy/lora.py model_lora_keys_unet: "lora_unet_" + the diffusers weight key without ".weight", "." -> "_"
    key_map = {"lora_unet_" + k[:-len(".weight")].replace(".", "_") for k in base_unet.state_dict() if k.endswith(".weight")}
    modules = {k.split(".", 1)[0] for k in comfy}
    assert len(comfy) == 3 * len(modules) == 3 * (len(state) // 2)
    assert modules <= key_map
    for name in modules:
        assert {f"{name}.lora_down.weight", f"{name}.lora_up.weight", f"{name}.alpha"} <= set(comfy)
        assert float(comfy[f"{name}.alpha"]) == ALPHA
        assert comfy[f"{name}.lora_down.weight"].shape[0] == RANK  # ComfyUI's rank: the rows of down

    back, alpha = comfyui_to_lora(comfy, [n for n, _ in base_unet.named_modules()])
    assert alpha == ALPHA and set(back) == set(state)
    for key, tensor in state.items():
        torch.testing.assert_close(back[key], tensor, rtol=0, atol=0)


def test_cli_export_comfyui_and_its_one_line_errors(host, saved, tmp_path, capsys):
    from cli_kit import run
    from flashctl.model.motion_files import comfyui_to_lora

    library = _library_with_motion(saved, tmp_path)
    lib = ["--library", library.root]
    out = tmp_path / "wave_comfy.safetensors"
    assert run(capsys, "export", "wave", "--format", "comfyui", "-o", out, *lib).code == 0
    back, alpha = comfyui_to_lora(load_lora(out), [n for n, _ in _backbone(host).unet.named_modules()])
    assert alpha == ALPHA and back.keys() == load_lora(saved / "weights" / LORA_FILE).keys()

    cases = [(["wave", "--format", "kohya", "-o", tmp_path / "k.safetensors"], 2, "'kohya'", "--format diffusers"),
             (["wave", "--format", "comfyui", "-o", tmp_path / "k.pt"], 2, "k.pt", "k.safetensors"),
             (["wave", "--format", "comfyui", "-o", tmp_path], 2, "is a folder", "name the file"),
             (["wave", "--format", "comfyui", "-o", tmp_path / "no" / "k.safetensors"], 2, "does not exist", "mkdir")]
    library.path("idle").mkdir()
    from flashctl.manifest import MotionManifest

    library.write_manifest("idle", MotionManifest(name="idle", prompt="p"))
    cases.append((["idle", "--format", "comfyui", "-o", tmp_path / "i.safetensors"], 1, "no weights yet",
                  "flashctl train idle"))
    for argv, code, says, fix in cases:
        result = run(capsys, "export", *argv, *lib)
        assert (result.code, result.out) == (code, ""), (argv, result)
        error, hint = result.err.strip().splitlines()
        assert says in error and fix in hint, (argv, result.err)
    assert not (tmp_path / "i.safetensors").exists() and not (tmp_path / "k.safetensors").exists()
