"""A recipe's stages in order, and the learning rate at every step.

`stages:` in a recipe lists the stages; each runs `steps` optimizer steps. Keys of a stage:

- `name`, `steps` (required, > 0);
- freezing: `trainable` (all|none|spatial|temporal), `within`, `include`, `exclude` (see
  `freeze.set_trainable`); `clip_length` (that stage's clip lengths);
- learning rate: `lr` (default `optimizer.lr`), `lr_new` + `new_params` (a second group for new
  modules), `warmup_steps`, `schedule` (`constant` or `cosine`, from `lr` down to
  `min_lr_ratio` x `lr` over the stage), each defaulting to the `optimizer` section's;
- `data`, `loss`: changes to the recipe's `data` / `loss` sections; a change holds for the later
  stages too;
- `restart` (default true): a fresh optimizer and batch stream at the stage's start, exactly as a
  separate run initialised from the previous stage's weights. `restart: false` continues the
  previous stage's optimizer state and batch stream with a new learning-rate segment (a warm
  restart, SGDR-style); it may not change which parameters train.

Recipes may accept more stage keys (`Recipe.stage_keys`). A stage key this module does not know,
or a `data` key the recipe's `data` lacks, fails before anything slow runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vdepth_ros.errors import ConfigError, closest_name

#: stage keys every recipe understands (see module docstring)
STAGE_KEYS = frozenset(
    ("name", "steps", "trainable", "within", "include", "exclude", "clip_length", "lr", "lr_new", "new_params")
    + ("warmup_steps", "schedule", "min_lr_ratio", "restart", "data", "loss")
)
#: keys that select the trained parameters: a `restart: false` stage keeps the previous stage's
FREEZE_KEYS = ("trainable", "within", "include", "exclude", "new_params")
#: keys that default to the `optimizer` section's value
OPTIMIZER_KEYS = ("lr", "lr_new", "new_params", "warmup_steps", "schedule", "min_lr_ratio")
SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class Stage:
    """One stage of a recipe.

    Attributes:
        index: position in `stages` (0 for the first).
        name: its `name`.
        start: its first global step; `steps` its length.
        origin: the global step at which its optimizer and batch stream started: its own `start`
            for a restart stage, else the origin of the stage before it.
        spec: the stage's keys with defaults filled in (`OPTIMIZER_KEYS` from `optimizer`, the
            freezing keys of the previous stage for `restart: false`).
        cfg: the recipe in effect: `data` and `loss` with this and the earlier stages' changes.
    """

    index: int
    name: str
    start: int
    steps: int
    origin: int
    spec: dict[str, Any]
    cfg: dict[str, Any]

    @property
    def restart(self) -> bool:
        return self.start == self.origin

    @property
    def end(self) -> int:
        return self.start + self.steps


def refuse_unknown_keys(where: str, given: Any, known: frozenset[str] | set[str]) -> None:
    """Refuse a mapping `given` (a config section) with keys nothing reads: a misspelt key would
    otherwise be ignored in silence and the run train with the default.

    Raises:
        ConfigError: `given` is not a mapping, or naming its unknown keys, a close known one for
            each ("did you mean"), and the known ones.
    """
    if given is None:
        return
    if not isinstance(given, dict):
        raise ConfigError(f"{where} must be a mapping of keys, got {type(given).__name__}")
    unknown = sorted(set(given) - set(known), key=str)
    if unknown:
        close = {k: closest_name(k, known) for k in unknown}
        hints = "".join(f" ({k}: did you mean {c!r}?)" for k, c in close.items() if c)
        raise ConfigError(f"{where} sets unknown keys {unknown}{hints}; known: {sorted(known)}")


def plan_stages(cfg: dict[str, Any], extra_keys: frozenset[str] = frozenset()) -> list[Stage]:
    """The stages of `cfg` (a loaded recipe) in order, with their effective settings.

    Raises:
        ConfigError: an unknown stage key (naming the closest known one), a `data` key the recipe
            lacks, a `restart: false` stage that changes the trained parameters, or an unknown schedule.
    """
    plan: list[Stage] = []
    known = STAGE_KEYS | extra_keys
    for i, entry in enumerate(cfg["stages"]):
        refuse_unknown_keys(f"stages[{i}]", entry, known)
        bad = set(entry.get("data") or {}) - set(cfg["data"]) - {"sources"}
        if bad:
            raise ConfigError(f"stages[{i}].data sets {sorted(bad)}, which the recipe's data does not have")
        prev = plan[-1] if plan else None
        restart = bool(entry.get("restart", True)) or prev is None
        spec = {k: cfg["optimizer"].get(k) for k in OPTIMIZER_KEYS}
        spec.update({"trainable": "all", "restart": restart})
        if not restart:
            assert prev is not None
            changed = [k for k in FREEZE_KEYS if k in entry and entry[k] != prev.spec.get(k)]
            if changed:
                raise ConfigError(f"stages[{i}] has restart: false but changes {changed} (which parameters train)")
            spec.update({k: prev.spec.get(k) for k in FREEZE_KEYS})
        spec.update({k: v for k, v in entry.items() if k not in ("data", "loss")})
        if spec["schedule"] not in SCHEDULES:
            raise ConfigError(f"stages[{i}].schedule must be one of {SCHEDULES}, got {spec['schedule']!r}")
        base = prev.cfg if prev else cfg
        eff = {**base, "data": {**base["data"], **(entry.get("data") or {})},
               "loss": {**base["loss"], **(entry.get("loss") or {})}}  # fmt: skip
        start = prev.end if prev else 0
        origin = start if restart else prev.origin  # type: ignore[union-attr]
        plan.append(Stage(i, str(entry["name"]), start, int(entry["steps"]), origin, spec, eff))
    return plan


def stage_at(plan: list[Stage], step: int) -> Stage:
    """The stage that runs global step `step` (the last one for steps past the end)."""
    for st in plan:
        if step < st.end:
            return st
    return plan[-1]


def total_steps(plan: list[Stage]) -> int:
    return plan[-1].end


def stage_lr(stage: Stage, step: int) -> float:
    """Learning rate of `stage` at global step `step`: linear warm-up over `warmup_steps`, then
    `lr` (`constant`) or a cosine from `lr` to `min_lr_ratio` x `lr` at the stage's end (`cosine`,
    held there past the end)."""
    spec = stage.spec
    base, warm, s = float(spec["lr"]), int(spec.get("warmup_steps") or 0), step - stage.start
    if s < warm:
        return base * (s + 1) / warm
    if spec["schedule"] == "constant":
        return base
    floor = float(spec.get("min_lr_ratio", 0.05))
    prog = min(1.0, (s - warm) / max(1, stage.steps - warm))
    return base * (floor + (1.0 - floor) * 0.5 * (1 + math.cos(math.pi * prog)))


__all__ = ["STAGE_KEYS", "Stage", "plan_stages", "stage_at", "stage_lr", "total_steps"]
