"""Identity by content: bases and motion adapters are named by a hash of their safetensors headers, sizes and
tensor samples, so a moved or symlinked folder is the same base and another adapter of the same config is not;
a motion that cannot fit is refused from the folders' metadata before any weights load."""

import json
import shutil
import struct

import pytest

from flashctl.context import BuildContext
from flashctl.errors import IncompatibleMotionError
from flashctl.files import read_json
from flashctl.model import content_id as cid
from flashctl.model.motion_files import CONFIG_FILE, FORMAT, check_compatible
from flashctl.model.motion_model import MotionModel, precheck_motion
from flashctl_animatediff.backbone import metadata_geometry
from flashctl_animatediff.components import SHIPPED_TINY_BASE
from motion_kit import tiny_config

ADAPTER = "motion_adapter/diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def bases(tmp_path_factory, host):
    """Two tiny bases in the sd15 layout, same configs, other weights (init_seed 0 and 1)."""
    root = tmp_path_factory.mktemp("bases")
    for seed in (0, 1):
        backbone = host.registry.create("backbone", "animatediff", {"init_seed": seed}, BuildContext())
        backbone.save_pretrained(root / f"seed{seed}")
    return root / "seed0", root / "seed1"


def _sd15(base, adapter=None) -> dict:
    return {"preset": "sd15", "base": str(base), "motion_adapter": str(adapter or base / "motion_adapter")}


def _header(path) -> bytes:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return f.read(n)


def test_moved_and_symlinked_folders_keep_their_id_other_weights_do_not(bases, tmp_path):
    a, b = bases
    moved = shutil.copytree(a, tmp_path / "moved")
    (tmp_path / "link").symlink_to(a, target_is_directory=True)
    ids = [cid.content_id(folder / "motion_adapter") for folder in (a, moved, tmp_path / "link", b)]
    assert ids[0] == ids[1] == ids[2] and len(ids[0]) == cid.ID_CHARS
    # same config, same dtype: the headers and sizes match, only the tensor samples tell them apart
    assert _header(a / ADAPTER) == _header(b / ADAPTER) and (a / ADAPTER).stat().st_size == (b / ADAPTER).stat().st_size
    assert ids[3] != ids[0]
    # a variant copy beside the plain file is not what a loader reads: the id stays
    shutil.copy(moved / ADAPTER, moved / "motion_adapter" / "diffusion_pytorch_model.fp16.safetensors")
    assert cid.content_id(moved / "motion_adapter") == ids[0]
    (tmp_path / "empty").mkdir()
    assert cid.content_id(tmp_path / "empty") is None
    # full hashing agrees on identity too (other scheme, other id)
    assert cid.full_content_id(moved / "motion_adapter") == cid.full_content_id(a / "motion_adapter") != ids[0]


def test_ids_are_cached_per_path_size_and_mtime(bases, tmp_path, monkeypatch):
    folder = shutil.copytree(bases[0] / "motion_adapter", tmp_path / "adapter")
    first = cid.content_id(folder)
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    assert cid.content_id(folder) == first and opened == []  # from the cache
    monkeypatch.undo()
    data = bytearray((folder / "diffusion_pytorch_model.safetensors").read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    data[8 + n] ^= 0xFF  # the first byte of the first tensor
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(bytes(data))
    assert cid.content_id(folder) != first


def test_not_a_safetensors_file_is_one_clear_error(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\xff" * 16)
    with pytest.raises(cid.ContentIdError, match="not a safetensors file"):
        cid.content_id(tmp_path)


def test_sd15_geometry_records_both_ids_and_the_metadata_geometry_agrees(bases, host, tmp_path):
    a, b = bases
    built = host.registry.create("backbone", "animatediff", _sd15(a), BuildContext()).geometry()
    assert built["base_content_id"] and built["adapter_content_id"]
    cheap = metadata_geometry(host.registry.get("backbone", "animatediff").validate_options(_sd15(a)), BuildContext())
    assert {k: built.get(k) for k in cheap} == cheap  # the pre-check reads the same values without building
    saved = {"backbone": {"geometry": built}}
    (tmp_path / "link").symlink_to(a, target_is_directory=True)
    options = host.registry.get("backbone", "animatediff").validate_options
    moved = metadata_geometry(options(_sd15(tmp_path / "link")), BuildContext())
    assert moved["base"] != built["base"]
    check_compatible("wave", saved, moved, partial=True)  # the same weights through a symlink fit
    check_compatible("wave", saved, {**built, "base": moved["base"]})
    other = metadata_geometry(options(_sd15(a, b / "motion_adapter")), BuildContext())
    with pytest.raises(IncompatibleMotionError) as info:
        check_compatible("wave", saved, other, partial=True)
    err = info.value
    assert built["adapter_content_id"] in err.message and other["adapter_content_id"] in err.message
    assert "motion adapter" in err.message and "\n" not in str(err)
    assert "options.backbone.animatediff.motion_adapter" in err.hint and "flashctl train wave" in err.hint
    with pytest.raises(IncompatibleMotionError, match=other["base_content_id"]):
        check_compatible("wave", saved, metadata_geometry(options(_sd15(b, a / "motion_adapter")), BuildContext()))


def test_a_motion_saved_before_content_ids_matches_on_the_base_text(bases, host, tmp_path):
    a, _ = bases
    options = host.registry.get("backbone", "animatediff").validate_options
    active = metadata_geometry(options(_sd15(a)), BuildContext())
    legacy = {k: v for k, v in active.items() if not k.endswith("_content_id")}
    check_compatible("wave", {"backbone": {"geometry": legacy}}, active, partial=True)
    (tmp_path / "link").symlink_to(a, target_is_directory=True)
    with pytest.raises(IncompatibleMotionError, match="differs in base"):
        check_compatible("wave", {"backbone": {"geometry": legacy}},
                         metadata_geometry(options(_sd15(tmp_path / "link")), BuildContext()), partial=True)


def test_shipped_motions_pass_the_precheck_on_the_shipped_base(host):
    options = host.registry.get("backbone", "animatediff").validate_options({"base": "shipped"})
    active = metadata_geometry(options, BuildContext())
    assert active["base_content_id"] and active["adapter_content_id"] and active["target"] == "residual"
    for record in sorted(SHIPPED_TINY_BASE.parents[3].glob("motions/*/weights/config.json")):
        check_compatible(record.parent.parent.name, read_json(record), active, partial=True)


def _motion(folder, geometry) -> None:
    folder.mkdir(parents=True)
    (folder / CONFIG_FILE).write_text(json.dumps({"format": FORMAT, "backbone": {"name": "animatediff",
                                                                                 "geometry": geometry}}))


def test_from_motion_refuses_a_mismatch_before_building_anything(bases, host, tmp_path, monkeypatch):
    a, b = bases
    built = host.registry.create("backbone", "animatediff", _sd15(a), BuildContext()).geometry()
    _motion(tmp_path / "wave", built)
    builds = []
    real_create = host.registry.create
    monkeypatch.setattr(host.registry, "create", lambda kind, *a, **k: builds.append(kind) or real_create(kind, *a, **k))
    for options, needle in ((_sd15(a, b / "motion_adapter"), built["adapter_content_id"]),  # another adapter
                            ({"init_seed": 3}, "tiny(init_seed=3)")):  # another preset and base
        config = tiny_config(tmp_path, options={"backbone": {"animatediff": options}})
        with pytest.raises(IncompatibleMotionError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            MotionModel.from_motion(tmp_path / "wave", config, host, BuildContext(), "wave")
    with pytest.raises(IncompatibleMotionError, match="differs in backbone"):
        MotionModel.from_motion(tmp_path / "wave", tiny_config(tmp_path, model={"backbone": "svd"}), host,
                                BuildContext(), "wave")
    assert builds == []  # refused from metadata: no backbone, no decoder built
    (tmp_path / "link").symlink_to(a, target_is_directory=True)
    precheck_motion("wave", read_json(tmp_path / "wave" / CONFIG_FILE),
                    tiny_config(tmp_path, options={"backbone": {"animatediff": _sd15(tmp_path / "link")}}),
                    host, BuildContext())  # the same weights elsewhere pass


def test_a_base_folder_without_an_id_text_is_named_by_its_option_in_the_error():
    saved = {"backbone": {"geometry": {"backbone": "animatediff", "base_content_id": "aaaa"}}}
    with pytest.raises(IncompatibleMotionError) as info:
        check_compatible("wave", saved, {"backbone": "animatediff", "base_content_id": "bbbb"}, partial=True)
    assert "None" not in info.value.message
    assert "base (options.backbone.animatediff.base) has content id bbbb" in info.value.message
