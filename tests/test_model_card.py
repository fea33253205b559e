"""Model cards: weights/README.md, written by train and hashed by provenance; `flashctl motions card`."""

from __future__ import annotations

import json

import pytest

from cli_kit import run
from flashctl.files import sha256_file
from flashctl.pipeline.train import train
from motion_kit import make_action, tiny_config


@pytest.fixture
def trained(tmp_path, host):
    """A 2-step tiny motion 'slide' and its config (the toml written, so the CLI finds the same library)."""
    config = tiny_config(tmp_path)
    library = make_action(config)
    train(config, library, "slide", host, steps=2)
    return config, library


def test_train_writes_a_hashed_card(trained):
    config, library = trained
    version = library.version_dir("slide")
    card = (version / "weights" / "README.md").read_text()
    provenance = library.provenance("slide")

    assert provenance["files"]["weights/README.md"] == sha256_file(version / "weights" / "README.md")
    assert library.verify("slide") == []
    library.check_version("slide", version)  # animate's check passes with the card in place
    manifest = library.manifest("slide")
    assert "action: `slide`" in card and '"a square slides right"' in card
    assert "2 clips listed in motion.toml" in card
    assert all(f"`{clip.sha256[:12]}`" in card for clip in manifest.clips)
    assert "Licence or consent not recorded for 2 of 2 clips" in card  # make_action fills in neither
    assert f"run id: `{provenance['run_id']}`" in card
    assert "preset: tiny" in card and "base id:" in card
    assert "| ablation row (METHOD.md) | #1 |" in card and "| steps | 2 |" in card and "| lr | 0.003 |" in card
    assert "Not evaluated yet" in card
    assert "flashctl export slide --format diffusers" in card and "flashctl animate -a slide" in card


def test_card_shows_the_latest_eval_and_the_weights_it_scored(trained):
    from flashctl.model_card import card_for_version

    config, library = trained
    version = library.version_dir("slide")
    scored = {"run_id": "R1", "lora_sha256": "ab" * 32, "decoder_sha256": None}
    (version / "eval" / "metrics.json").write_text(json.dumps({
        "created": "2026-01-01T00:00:00+00:00", "samples": [{}, {}], "references": "held-out clips",
        "summary": {"motion-track/correlation": 0.25, "keypoints/error": 0.125},
        "higher_is_better": {"motion-track/correlation": True, "keypoints/error": False}, "weights": scored}))
    card = card_for_version("slide", library.manifest("slide"), version)
    assert "Latest eval (2026-01-01T00:00:00+00:00, 2 samples, references: held-out clips)" in card
    assert "| motion-track/correlation | ↑ | 0.25 |" in card and "| keypoints/error | ↓ | 0.125 |" in card
    assert f"Scored weights: run `R1`, lora.safetensors `{'ab' * 6}`." in card


def test_card_command_prints_and_writes_only_for_motions_without_a_hashed_card(trained, capsys):
    config, library = trained
    version = library.version_dir("slide")
    lib = ["--library", str(library.root)]

    printed = run(capsys, "motions", "card", "slide", *lib)
    assert printed.code == 0 and printed.out.startswith("# Motion: slide\n")
    refused = run(capsys, "motions", "card", "slide", "--write", *lib)
    assert refused.code == 1 and "covered by provenance.json's hashes" in refused.err
    assert len(refused.err.strip().splitlines()) == 2  # error + hint

    # a motion trained before cards: no card, none in its provenance
    (version / "weights" / "README.md").unlink()
    provenance = json.loads((version / "provenance.json").read_text())
    provenance["files"].pop("weights/README.md")
    (version / "provenance.json").write_text(json.dumps(provenance))
    written = run(capsys, "motions", "card", "slide", "--write", *lib)
    assert written.code == 0 and written.out.strip() == str(version / "weights" / "README.md")
    assert "not in provenance.json's hashes" in written.err
    assert (version / "weights" / "README.md").read_text() == printed.out
    assert library.verify("slide") == []  # the unhashed card breaks nothing
    library.check_version("slide", version)


def test_card_of_an_untrained_motion_is_one_error(tmp_path, capsys):
    config = tiny_config(tmp_path)
    library = make_action(config)
    result = run(capsys, "motions", "card", "slide", "--library", str(library.root))
    assert result.code == 1 and "has no weights yet" in result.err and "flashctl train slide" in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error:") and result.out == "" and "Traceback" not in result.err
