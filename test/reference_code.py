"""The seed papers' own code (`../shared/reference-code`) as a test fixture: locate, stub, import.

Parity tests compare the package's models with the authors' modules on the same random weights. The
authors' code is imported from its folder (never copied into the project) and the test skips with a
reason when the folder is absent. Packages it imports that the project does not need are replaced by
the small stand-ins below when they are not installed (nothing is installed at test time):

* `einops.rearrange` / `einops.repeat` / `einops.einsum`: the axis patterns the references use,
  implemented with `reshape`/`permute`/`expand`/`torch.einsum` (plain names and parenthesised groups;
  no ellipsis, no literals).
* `easydict.EasyDict`: a dict with attribute access.
* `torchvision.transforms.Compose`: applies the transforms in order; `InterpolationMode` names;
  `functional.resize` / `pil_to_tensor` raise if reached (the tests avoid the resize paths).
* `matplotlib`: an empty module (imported for colour maps that the tests never request).
"""

from __future__ import annotations

import enum
import importlib
import math
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from vdepth_ros.paths import reference_code_dir


def reference_folder(name: str) -> Path:
    """`../shared/reference-code/<name>`, or skip the test saying why."""
    root = reference_code_dir()
    if root is None or not (root / name).is_dir():
        pytest.skip(f"the authors' code ({name}) is not in ../shared/reference-code (set VDEPTH_REFERENCE_CODE)")
    return root / name


def _groups(side: str) -> list[list[str]]:
    tokens = side.replace("(", " ( ").replace(")", " ) ").split()
    groups: list[list[str]] = []
    current: list[str] | None = None
    for tok in tokens:
        if tok == "(":
            current = []
        elif tok == ")":
            assert current is not None, side
            groups.append(current)
            current = None
        elif current is not None:
            current.append(tok)
        else:
            groups.append([tok])
    return groups


def rearrange(x: torch.Tensor, pattern: str, /, **sizes: int) -> torch.Tensor:
    """einops' `rearrange`/`repeat` for patterns of names and parenthesised groups (positional-only
    arguments: axis names such as `x` arrive as keywords)."""
    left, right = (_groups(p) for p in pattern.split("->"))
    sizes = dict(sizes)
    for group, dim in zip(left, x.shape, strict=True):
        unknown = [n for n in group if n not in sizes]
        known = math.prod(sizes[n] for n in group if n in sizes)
        if len(unknown) == 1:
            sizes[unknown[0]] = dim // known
    names = [n for g in left for n in g]
    x = x.reshape([sizes[n] for n in names])
    out_names = [n for g in right for n in g]
    new = [n for n in out_names if n not in names]  # repeat: axes made by broadcasting
    for n in new:
        x = x.unsqueeze(-1)
        names.append(n)
    x = x.permute([names.index(n) for n in out_names])
    if new:
        x = x.expand([sizes[n] for n in out_names])
    return x.reshape([math.prod(sizes[n] for n in g) for g in right])


def einsum(*args: Any) -> torch.Tensor:
    """einops' `einsum(*tensors, pattern)` with axis names of any length, via `torch.einsum`."""
    *tensors, pattern = args
    letters: dict[str, str] = {}
    inputs, output = pattern.split("->")

    def spec(side: str) -> str:
        return "".join(letters.setdefault(n, chr(ord("a") + len(letters))) for n in side.split())

    equation = ",".join(spec(s) for s in inputs.split(",")) + "->" + spec(output)
    return torch.einsum(equation, *tensors)


class _EasyDict(dict):
    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    __setattr__ = dict.__setitem__  # type: ignore[assignment]


class _Compose:
    def __init__(self, transforms: list[Any]) -> None:
        self.transforms = transforms

    def __call__(self, x: Any) -> Any:
        for t in self.transforms:
            x = t(x)
        return x


def _not_stubbed(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("this torchvision function is not stubbed: the parity test must not reach it")


def install_stubs() -> list[str]:
    """Put the stand-ins into `sys.modules` for packages that are not installed; returns their names.

    diffusers is imported first: its import-time checks (`importlib.util.find_spec("torchvision")`)
    must see the real environment, not the stand-ins."""
    import diffusers  # noqa: F401

    installed: list[str] = []

    def missing(name: str) -> bool:
        try:
            importlib.import_module(name)
            return False
        except ImportError:
            return True

    if missing("einops"):
        mod = types.ModuleType("einops")
        mod.rearrange = rearrange  # type: ignore[attr-defined]
        mod.repeat = rearrange  # type: ignore[attr-defined]
        mod.einsum = einsum  # type: ignore[attr-defined]
        sys.modules["einops"] = mod
        installed.append("einops")
    if missing("easydict"):
        mod = types.ModuleType("easydict")
        mod.EasyDict = _EasyDict  # type: ignore[attr-defined]
        sys.modules["easydict"] = mod
        installed.append("easydict")
    if missing("torchvision"):
        tv = types.ModuleType("torchvision")
        tr = types.ModuleType("torchvision.transforms")
        fn = types.ModuleType("torchvision.transforms.functional")
        tr.Compose = _Compose  # type: ignore[attr-defined]
        tr.InterpolationMode = enum.Enum("InterpolationMode", "NEAREST NEAREST_EXACT BILINEAR BICUBIC")  # type: ignore[attr-defined]
        fn.resize = fn.pil_to_tensor = _not_stubbed  # type: ignore[attr-defined]
        tv.transforms, tr.functional = tr, fn  # type: ignore[attr-defined]
        sys.modules.update({"torchvision": tv, "torchvision.transforms": tr, "torchvision.transforms.functional": fn})
        installed += ["torchvision", "torchvision.transforms", "torchvision.transforms.functional"]
    if missing("matplotlib"):
        sys.modules["matplotlib"] = types.ModuleType("matplotlib")  # colour maps only; never called
        installed.append("matplotlib")
    return installed


@contextmanager
def reference_import(name: str, bare_packages: tuple[str, ...] = ()) -> Iterator[None]:
    """Import from `reference-code/<name>` inside the block; afterwards its modules leave `sys.modules`
    (the objects stay usable), so references with the same package names (`model`, `utils`) don't clash.

    `bare_packages` (e.g. `("diffsynth", "diffsynth.models")`) are made importable without running
    their `__init__.py`, whose imports pull in the whole authors' framework."""
    folder = reference_folder(name)
    stubs = install_stubs()
    before = set(sys.modules)
    for pkg in bare_packages:
        module = types.ModuleType(pkg)
        module.__path__ = [str(folder / pkg.replace(".", "/"))]  # type: ignore[attr-defined]
        sys.modules[pkg] = module
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))
        for mod in set(sys.modules) - before:
            file = getattr(sys.modules[mod], "__file__", None) or ""
            if file.startswith(str(folder)) or mod in bare_packages:
                del sys.modules[mod]
        for mod in stubs:  # the stand-ins live only while the authors' modules are imported
            sys.modules.pop(mod, None)


@contextmanager
def empty_weights() -> Iterator[None]:
    """Build modules with their parameters moved to the meta device as they are registered (released
    sizes without keeping the memory). Unlike a `torch.device("meta")` context, plain tensors made in
    `__init__` stay real, so code like `torch.linspace(...).item()` still runs."""
    register = torch.nn.Module.register_parameter

    def to_meta(self: torch.nn.Module, name: str, param: torch.nn.Parameter | None) -> None:
        register(self, name, param)
        if param is not None:
            self._parameters[name] = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    torch.nn.Module.register_parameter = to_meta  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register  # type: ignore[method-assign]


def relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """max |ours - theirs| / max |theirs| (the parity tolerance's measure)."""
    return float((ours.double() - theirs.double()).abs().max() / theirs.double().abs().max().clamp_min(1e-12))


def randomize_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Seeded random values in every parameter (weights ~ N(0, 1/fan_in), vectors ~ N(0, 0.1^2), norm
    scales ~ 1 + N(0, 0.1^2)), so that no part of the forward is an identity or zero by initialisation
    (LayerScale, zero-initialised projections, gates). Buffers (sinusoidal tables) keep their values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.named_parameters():
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=gen, dtype=torch.float32)
            if tensor.dim() >= 2:
                value = noise / math.sqrt(max(1, math.prod(tensor.shape[1:])))
            elif ("norm" in name and name.endswith("weight")) or name.endswith("gamma"):
                value = 1.0 + 0.1 * noise
            else:
                value = 0.1 * noise
            tensor.copy_(value.to(tensor.dtype))
    return module
