"""eval ties its scores to the weights it scored: metrics.json records the run id and the weights' sha256s."""

from __future__ import annotations

import json

from flashctl.files import sha256_file
from flashctl.pipeline.evaluate import evaluate
from flashctl.pipeline.report import load_result, write_report
from flashctl.pipeline.train import train
from motion_kit import make_action, tiny_config


def test_eval_records_the_weights_it_scored_and_the_report_shows_them(tmp_path, host):
    config = tiny_config(tmp_path)
    library = make_action(config)
    train(config, library, "slide", host, steps=2)
    config = config.model_copy(update={"eval": config.eval.model_copy(update={"metrics": ["first-frame"]})})
    version = library.version_dir("slide")
    result = evaluate(config, library, "slide", host)

    record = json.loads(result.path.read_text())["weights"]
    lora = sha256_file(version / "weights" / "lora.safetensors")
    assert record["run_id"] == library.provenance("slide")["run_id"]
    assert record["version"] == version.name
    assert record["lora_sha256"] == lora and record["decoder_sha256"] is None
    assert set(record["files"]) == {"weights/config.json", "weights/lora.safetensors"}  # weights only
    assert record["files"].items() <= library.provenance("slide")["files"].items()  # what train recorded
    assert result.weights == record and load_result(result.path).weights == record

    written = write_report(load_result(result.path), result.path.parent)
    line = f"Scored weights: run {record['run_id']}, lora.safetensors sha256 {lora[:12]}."
    assert line in written["markdown"].read_text()
    assert line in written["html"].read_text()


def test_a_stand_in_animator_records_no_weights(tmp_path, host):
    import numpy as np

    class Still:
        def render(self, image, seed):
            return np.repeat(image[None], 4, axis=0)

    config = tiny_config(tmp_path)
    config = config.model_copy(update={"eval": config.eval.model_copy(update={"metrics": ["first-frame"]})})
    library = make_action(config)
    result = evaluate(config, library, "slide", host, animator=Still())
    assert json.loads(result.path.read_text())["weights"] is None
    assert "Scored weights: not recorded" in write_report(result, result.path.parent)["markdown"].read_text()
