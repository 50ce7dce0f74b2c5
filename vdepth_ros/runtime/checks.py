"""Check every file of a model before any of it is loaded, so a bad one stops start-up with one line.

`create_engine` reads only the format its backend uses; a truncated `model.safetensors` next to a
valid `model.onnx` would go unnoticed until someone switches backend, and a garbage `model.onnx`
fails inside onnxruntime with a protobuf traceback. `check_model_files` reads what each file
declares about itself (cheaply: the safetensors header against the file size, the ONNX protobuf
without external data, the JSON sidecars) for every model file present, used or not, and raises
`ModelFileError("<file>: <reason>")` for the first bad one.
"""

from __future__ import annotations

import json
from pathlib import Path

from vdepth_ros.errors import ConfigError, ModelLoadError


class ModelFileError(ModelLoadError):
    """One model file is unusable; the message is "<file>: <reason>"."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def _check_json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise ModelFileError(path, f"cannot be read ({err})") from None
    except json.JSONDecodeError as err:
        raise ModelFileError(path, f"is not valid JSON ({err})") from None
    if not isinstance(doc, dict):
        raise ModelFileError(path, f"must hold a JSON object, not {type(doc).__name__}")
    return doc


def _check_config(path: Path) -> None:
    from vdepth_ros.models import MODEL_FAMILIES

    family = _check_json(path).get("_family")
    if family not in MODEL_FAMILIES:
        raise ModelFileError(path, f"_family {family!r} is not one of {', '.join(sorted(MODEL_FAMILIES))}")


def _check_safetensors(path: Path) -> None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "np") as f:  # validates the header against the file size
            f.keys()
    except Exception as err:  # safetensors raises its own SafetensorError (and OSError)
        raise ModelFileError(path, f"not a complete safetensors file ({err})") from None


def _check_spec(path: Path) -> None:
    from vdepth_ros.runtime.spec import InputSpec

    if not path.is_file():
        raise ModelFileError(path, "missing: the exporter writes it next to the model file")
    _check_json(path)
    try:
        InputSpec.load(path)
    except (ConfigError, TypeError, ValueError, KeyError) as err:
        raise ModelFileError(path, f"is not a valid input spec ({err})") from None


def _check_onnx(path: Path) -> None:
    if path.stat().st_size == 0:
        raise ModelFileError(path, "is empty")
    try:
        import onnx
    except ImportError:  # onnxruntime alone installed: it reports a bad file itself when loading it
        return
    try:
        onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf's DecodeError and friends
        raise ModelFileError(path, f"is not an ONNX model ({type(err).__name__}: {err})") from None


def _check_engine(path: Path) -> None:
    if path.stat().st_size == 0:
        raise ModelFileError(path, "is empty")
    key = path.with_name(path.name + ".key.json")
    if key.is_file():
        _check_json(key)


def check_model_files(model: str | Path) -> list[Path]:
    """Check a model folder's files (or one `.onnx`/`.engine` file and its spec); returns those checked.

    Raises:
        ModelFileError: the first unusable file, with the reason.
        ModelLoadError: `model` does not exist.
    """
    path = Path(model)
    if not path.exists():
        raise ModelLoadError(f"{path}: does not exist (expected a model folder, .onnx or .engine file)")
    checked: list[Path] = []
    files = [path] if path.is_file() else sorted(path.iterdir())
    for file in files:
        check = {
            "config.json": _check_config,
            "model.safetensors": _check_safetensors,
        }.get(file.name)
        if check is None and file.suffix == ".onnx":
            check = _check_onnx
        elif check is None and file.suffix in (".engine", ".plan"):
            check = _check_engine
        if check is None:
            continue
        try:
            check(file)
            if file.suffix in (".onnx", ".engine", ".plan"):
                _check_spec(file.with_name(file.name + ".json"))
        except OSError as err:
            raise ModelFileError(file, f"cannot be read ({err})") from None
        checked.append(file)
    return checked
