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

from vdepth_ros.errors import ModelLoadError
from vdepth_ros.runtime import ENGINE_SUFFIXES, ONNX_NAME


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
    family = _check_json(path).get("_family")
    if not isinstance(family, str) or not family:  # which families exist is `models.load_model`'s check
        raise ModelFileError(path, f"has no model family ('_family': {family!r})")


def _check_safetensors(path: Path) -> None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "np") as f:  # validates the header against the file size
            f.keys()
    except Exception as err:  # safetensors raises its own SafetensorError (and OSError)
        raise ModelFileError(path, f"not a complete safetensors file ({err})") from None


def _check_spec(path: Path) -> None:
    from vdepth_ros.runtime.spec import InputSpec, SpecError

    try:
        InputSpec.load(path)
    except SpecError as err:
        raise ModelFileError(path, err.reason) from None


def _protobuf_fields(data: bytes) -> set[int]:
    """The field numbers of one serialized protobuf message, walking its wire format.

    Hand-written because importing `onnx` to parse the file costs ~1.5 s of start-up on this
    machine; the wire format is fixed (protobuf's encoding spec: varint tags, wire types 0, 1, 2, 5).

    Raises:
        ValueError: the bytes are not a well-formed message.
    """
    fields: set[int] = set()
    i, n = 0, len(data)

    def varint() -> int:
        nonlocal i
        value, shift = 0, 0
        while True:
            if i >= n or shift > 63:
                raise ValueError(f"truncated varint at byte {i}")
            byte = data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while i < n:
        tag = varint()
        number, wire = tag >> 3, tag & 7
        if number == 0 or wire not in (0, 1, 2, 5):
            raise ValueError(f"invalid field tag {tag} at byte {i}")
        if wire == 0:
            varint()
        else:
            size = {1: 8, 5: 4}.get(wire) or varint()
            if i + size > n:
                raise ValueError(f"field {number} runs past the end of the file ({i + size} > {n} bytes)")
            i += size
        fields.add(number)
    return fields


def _check_onnx(path: Path) -> None:
    data = path.read_bytes()
    if not data:
        raise ModelFileError(path, "is empty")
    try:
        fields = _protobuf_fields(data)
    except ValueError as err:
        raise ModelFileError(path, f"is not an ONNX model (truncated or not protobuf: {err})") from None
    if not {1, 7} <= fields:  # ModelProto.ir_version and .graph
        raise ModelFileError(path, "is not an ONNX model (no ir_version or graph)")


def _check_engine(path: Path) -> None:
    if path.stat().st_size == 0:
        raise ModelFileError(path, "is empty")
    key = path.with_name(path.name + ".key.json")
    if key.is_file():
        _check_json(key)


def _loaded_from_folder(file: Path) -> bool:
    """Whether the runtime may load `file` from its model folder: `config.json`, `model.safetensors` and
    the graphs named `model.*` (`model.onnx`, its variants and split graphs, their engines). Another
    graph kept there (another tool's ONNX, a copy under another name) is never loaded, so never checked."""
    if file.suffix not in (".onnx", *ENGINE_SUFFIXES):
        return True
    return file.name.split(".")[0] == ONNX_NAME.split(".")[0]


def _refuse_split_half(path: Path) -> None:
    """`ModelLoadError` for one of the two graphs `vdepth-export split` writes (`model.frame.onnx`,
    `model.window.onnx`, or their engines) given as the model: neither is a whole model (the per-frame one
    outputs feature maps, not disparity); the whole graph beside them runs them itself."""
    parts = path.name.split(".")  # model.frame.onnx, or one machine's model.frame.<platform>.engine
    if not path.is_file() or len(parts) < 3 or parts[1] not in ("frame", "window"):
        return
    whole = path.with_name(".".join([parts[0], *parts[2:]]))
    if not path.with_name(f"{parts[0]}.split.json").is_file() and not whole.is_file():
        return
    half = "per-frame" if parts[1] == "frame" else "per-window"
    raise ModelLoadError(
        f"{path} is the {half} half of a split export (vdepth-export split), not a whole model: give {whole} or "
        f"the folder {path.parent} (the whole graph runs its split halves itself where they match it)"
    )


def check_model_files(model: str | Path) -> list[Path]:
    """Check a model folder's files (or one `.onnx`/`.engine` file and its spec); returns those checked.

    Raises:
        ModelFileError: the first unusable file, with the reason.
        ModelLoadError: `model` does not exist.
    """
    path = Path(model)
    if not path.exists():
        raise ModelLoadError(f"{path}: does not exist (expected a model folder, .onnx or .engine file)")
    _refuse_split_half(path)
    checked: list[Path] = []
    files = [path] if path.is_file() else [f for f in sorted(path.iterdir()) if _loaded_from_folder(f)]
    try:  # the same files, unchanged since they passed (a tool checks before its outputs, the pipeline again)
        specs = [f.with_name(f.name + ".json") for f in files]  # a single graph's spec is not in `files`
        signature = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in [*files, *specs] if f.exists())
    except OSError:
        signature = None
    if signature is not None and _PASSED.get(str(path.absolute()), (None,))[0] == signature:
        return list(_PASSED[str(path.absolute())][1])
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
    if signature is not None:
        _PASSED[str(path.absolute())] = (signature, tuple(checked))
    return checked


#: model path -> (its files' (name, size, mtime) when they last passed, the files checked)
_PASSED: dict[str, tuple[tuple[tuple[str, int, int], ...], tuple[Path, ...]]] = {}


def checked_model(model: str, params_file: str | Path | None = None) -> str:
    """`model` resolved (`registry.resolve_model`: "default", a release name, a path relative to the
    current folder or to `params_file`'s folder) and every file of it checked (`check_model_files`): what
    the node and every offline tool call before any work, so a bad model stops each with the same line.

    Raises:
        ModelLoadError: not found (naming the path tried and what it is relative to), a release not
            pulled, or `ModelFileError` for the first unusable file.
        ConfigError: a relative `$VDEPTH_MODEL_CACHE`.
    """
    from vdepth_ros.runtime.registry import resolve_model

    path = resolve_model(model, params_file)
    check_model_files(path)
    return path
