"""`@register_to_config`: a family's constructor arguments are its config.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from vdepth_ros.models import InputConstraints, VideoDepthModel, register_to_config


class _Parent(VideoDepthModel):
    family: ClassVar[str] = "test_parent"

    @register_to_config
    def __init__(self, width: int = 4, sizes: tuple[int, ...] = (1, 2), name: str = "p") -> None:
        super().__init__()
        self.layer = torch.nn.Linear(width, 1)

    @property
    def input_constraints(self) -> InputConstraints:
        return InputConstraints()


class _Child(_Parent):
    family: ClassVar[str] = "test_child"

    @register_to_config
    def __init__(self, width: int = 6, extra: dict | None = None) -> None:
        super().__init__(width, sizes=(3,), name="from child")


def test_the_arguments_with_defaults_become_the_config_as_json_types() -> None:
    assert _Parent(8, name="x").config == {"width": 8, "sizes": [1, 2], "name": "x"}
    assert list(_Parent.__init__.__signature__.parameters) == ["self", "width", "sizes", "name"]  # kept for callers


def test_the_most_derived_class_records_and_its_parent_adds_nothing() -> None:
    assert _Child(extra={"a": (1, 2)}).config == {"width": 6, "extra": {"a": [1, 2]}}


def test_config_json_holds_family_class_and_config(tmp_path: Path) -> None:
    _Child(width=5).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved == {"_family": "test_child", "_class_name": "_Child", "width": 5, "extra": None}


def test_a_family_whose_init_is_not_decorated_is_refused_when_defined() -> None:
    with pytest.raises(TypeError, match="register_to_config"):

        class _Forgot(VideoDepthModel):  # pragma: no cover - the class statement itself raises
            def __init__(self, width: int = 4) -> None:
                super().__init__()


def test_values_that_json_cannot_hold_are_refused() -> None:
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        _Parent(name=Path("x"))  # type: ignore[arg-type]


def _saved_tiny_vda(folder: Path) -> Path:
    from vdepth_ros.models.vda import VideoDepthAnything

    torch.manual_seed(0)
    return VideoDepthAnything(**VideoDepthAnything.tiny_config()).save_pretrained(folder)


def test_a_folder_that_does_not_fit_its_config_is_a_model_load_error_naming_the_keys(tmp_path: Path) -> None:
    """Each of these used to escape as a bare TypeError/RuntimeError/JSONDecodeError/SafetensorError
    (a traceback in every tool); missing keys even raised `'set' object is not subscriptable`."""
    from safetensors.torch import load_file, save_file

    from vdepth_ros.errors import ModelLoadError
    from vdepth_ros.models import load_model, read_config

    folder = _saved_tiny_vda(tmp_path / "m")
    weights, config = folder / "model.safetensors", folder / "config.json"
    good_weights, good_config = weights.read_bytes(), config.read_text()
    state = load_file(weights)
    dropped = sorted(state)[0]
    state.pop(dropped)
    state["not.a.key"] = torch.zeros(1)
    save_file(state, weights)
    with pytest.raises(ModelLoadError, match=rf"missing keys \['{dropped}'\] \(1\), unexpected keys \['not\.a\.key'\]"):
        load_model(folder)
    assert load_model(folder, strict=False) is not None  # strict=False still loads what fits

    weights.write_bytes(good_weights)
    config.write_text(json.dumps({**json.loads(good_config), "features": 32}))  # another width than the weights
    shape = r"another shape: head\.convs\.0\.weight \(16, 8, 3, 3\) \(model \(32, 8, 3, 3\)\)"
    with pytest.raises(ModelLoadError, match=shape):
        load_model(folder)
    config.write_text(json.dumps({**json.loads(good_config), "bogus": 1}))
    with pytest.raises(ModelLoadError, match=r"config\.json does not fit family 'vda'.*bogus"):
        load_model(folder)
    config.write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"config\.json is not valid JSON"):
        read_config(folder)

    config.write_text(good_config)
    weights.write_bytes(good_weights[:100])  # a truncated download
    with pytest.raises(ModelLoadError, match=r"model\.safetensors is not a readable safetensors file"):
        load_model(folder)
    from vdepth_ros.models import load_state_dict_file

    with pytest.raises(ModelLoadError, match=r"not a readable safetensors file"):
        load_state_dict_file(weights)
    weights.write_bytes(good_weights)
    assert load_model(folder) is not None


def test_a_config_value_of_another_type_is_refused_not_taken_as_truthy(tmp_path: Path) -> None:
    """A hand-edited config.json with `"metric": "false"` (quoted) used to load as a metric model (a
    non-empty string is true): every tool then wrote relative disparity as depth in metres."""
    from vdepth_ros.errors import ModelLoadError
    from vdepth_ros.models import load_model

    folder = _saved_tiny_vda(tmp_path / "m")
    config = folder / "config.json"
    good = json.loads(config.read_text())
    for key, value, expected in (("metric", "false", "true or false"), ("window", "8", "an integer"),
                                 ("out_channels", 8, "a list of integers")):  # fmt: skip
        config.write_text(json.dumps({**good, key: value}))
        with pytest.raises(ModelLoadError, match=rf"config\.json: {key} expects {expected}.*got {value!r}"):
            load_model(folder)
    config.write_text(json.dumps(good))
    assert load_model(folder).input_constraints.output_kind == "disparity"


def test_a_model_folder_with_another_familys_weights_names_both(tmp_path: Path) -> None:
    """A model.safetensors copied over another family's folder (a DepthCrafter config with FiffDepth's
    weights, a DVD config with VDA's) used to answer with a list of missing keys or mis-shaped tensors;
    now the family the weights are and the one the config builds. Weights of the config's own family at
    other sizes keep the shape error (they are not another family's)."""
    import shutil

    from vdepth_ros.errors import ModelLoadError
    from vdepth_ros.models import build_model, family_class, load_model

    torch.manual_seed(0)
    for family in ("vda", "depthcrafter", "fiffdepth", "dvd"):
        build_model(family, **family_class(family).tiny_config()).save_pretrained(tmp_path / family)
    for config, weights in (("depthcrafter", "fiffdepth"), ("dvd", "vda"), ("vda", "depthcrafter")):
        folder = tmp_path / f"{config}_with_{weights}"
        shutil.copytree(tmp_path / config, folder)
        shutil.copy(tmp_path / weights / "model.safetensors", folder / "model.safetensors")
        with pytest.raises(ModelLoadError) as err:
            load_model(folder)
        assert str(err.value) == (
            f"{folder}/model.safetensors holds the weights of a model of family {weights}, but {folder}/config.json "
            f"builds one of family {config} (_family): the two files are of two models; import or export it again"
        )
    wider = tmp_path / "vda_wider"
    build_model("vda", **{**family_class("vda").tiny_config(), "features": 32}).save_pretrained(wider)
    shutil.copy(tmp_path / "vda" / "model.safetensors", wider / "model.safetensors")
    with pytest.raises(ModelLoadError, match=r"does not fit its config.json: \d+ tensor\(s\) of another shape"):
        load_model(wider)


@pytest.mark.parametrize(
    "shard_name",
    ["diffusion_pytorch_model.fp16-{i:05d}-of-00003.safetensors", "model-{i:05d}-of-00003.fp16.safetensors"],
)
def test_a_variants_split_checkpoint_loads_through_its_index_its_folder_or_a_shard(
    tmp_path: Path, shard_name: str
) -> None:
    """A split checkpoint of a variant, as `save_pretrained(..., variant="fp16", max_shard_size=...)` writes it (and
    `hf download --include "*fp16*"` fetches it): `*.fp16-0000i-of-0000n.safetensors` (older diffusers:
    `-0000i-of-0000n.fp16.safetensors`) beside `*.safetensors.index.fp16.json`. The index read as 'a text file, not
    the weights; download the weights again', a shard as 'no *.index.json beside it lists it', the folder as 'pass
    the checkpoint file itself'."""
    from safetensors.torch import save_file

    from vdepth_ros.models.base import load_state_dict_file

    state = {f"layer{i}.weight": torch.full((2, 2), float(i), dtype=torch.float16) for i in range(3)}
    weight_map = {}
    for i, (key, value) in enumerate(state.items(), start=1):
        save_file({key: value}, str(tmp_path / shard_name.format(i=i)))
        weight_map[key] = shard_name.format(i=i)
    index = tmp_path / "diffusion_pytorch_model.safetensors.index.fp16.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    for given in (index, tmp_path, tmp_path / shard_name.format(i=2)):
        loaded = load_state_dict_file(given)
        assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state), given


def test_an_adapter_saved_under_its_name_is_found_in_its_subfolder(tmp_path: Path) -> None:
    """peft's `save_pretrained(folder)` puts an adapter not named "default" in `folder/<name>/`; `--adapter folder`
    read only 'not a peft adapter folder (no readable adapter_config.json)'. The error names the subfolder to give."""
    from peft import LoraConfig, get_peft_model

    from vdepth_ros.errors import ModelLoadError
    from vdepth_ros.models.base import merge_lora_adapter

    tuned = get_peft_model(
        torch.nn.Sequential(torch.nn.Linear(4, 4)), LoraConfig(r=2, target_modules=["0"]), adapter_name="depth"
    )
    tuned.save_pretrained(tmp_path / "adapter")
    with pytest.raises(ModelLoadError, match=r"holds the adapter folders depth .*: give .*adapter/depth$"):
        merge_lora_adapter({"0.weight": torch.zeros(4, 4)}, tmp_path / "adapter", "base.pth")
    assert merge_lora_adapter({"0.weight": torch.zeros(4, 4)}, tmp_path / "adapter" / "depth", "base.pth").keys() == {
        "0.weight"
    }
