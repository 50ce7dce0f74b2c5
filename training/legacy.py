"""The former `train_default` recipe schema (`model`, `data`, `train`, `augment`) read as a recipe of
the one trainer (`recipe: default`); `config.load_config` converts such files with a warning.

The committed default-model configs were converted with this function; it stays so that a user's
own recipe in the old schema keeps training the same run.
"""

from __future__ import annotations

from typing import Any

#: loss weights the old schema kept in `train` (and a stage could change)
LOSS_KEYS = ("w_gm", "w_tgm", "w_ssi", "w_ssi_sequence", "w_frame_level")


def convert_train_default(raw: dict[str, Any]) -> dict[str, Any]:
    """An old-schema recipe -> the trainer's schema, step for step the same run.

    Old `train.steps`/`lr`/`warmup` become stage 1; each of `train.stages` a later stage with
    `restart: false` unless it set `restart: true` (the old default); the cosine schedule to 5 %,
    the encoder and new-module learning-rate factors, `init`, `stop_at` and `threads` carry over.
    """
    train = dict(raw["train"])
    model = dict(raw["model"])
    family = model.pop("family")
    out_model: dict[str, Any] = {"family": family, "config": model}
    if train.get("pretrained_encoder"):
        out_model["pretrained_encoder"] = True
    optimizer = {"name": "adamw", "lr": float(train["lr"]), "weight_decay": float(train.get("weight_decay", 0.0)),
                 "grad_clip": train.get("grad_clip"), "warmup_steps": int(train.get("warmup", 0)),
                 "schedule": "cosine", "min_lr_ratio": 0.05}  # fmt: skip
    for key in ("encoder_lr_scale", "new_module_lr_scale"):
        if key in train:
            optimizer[key] = float(train[key])
    training = {"seed": int(train.get("seed", 0)), "batch_size": int(train["batch_size"]),
                "checkpoint_every": int(train["checkpoint_every"])}  # fmt: skip
    for key in ("init", "init_new_modules", "threads", "stop_at"):
        if train.get(key) is not None:
            training[key] = train[key]
    stages = [{"name": "stage1", "steps": int(train["steps"]), "lr": float(train["lr"]),
               "warmup_steps": int(train.get("warmup", 0))}]  # fmt: skip
    for i, st in enumerate(train.get("stages") or [], start=2):
        stage: dict[str, Any] = {"name": f"stage{i}", "steps": int(st["steps"]), "lr": float(st["lr"])}
        stage.update(warmup_steps=int(st.get("warmup", 0)), restart=bool(st.get("restart", False)))
        if st.get("data"):
            stage["data"] = dict(st["data"])
        loss = {k: float(st[k]) for k in LOSS_KEYS if k in st}
        if loss:
            stage["loss"] = loss
        if "encoder_lr_scale" in st:
            stage["encoder_lr_scale"] = float(st["encoder_lr_scale"])
        stages.append(stage)
    return {
        "recipe": "default",
        "model": out_model,
        "data": dict(raw["data"]),
        "optimizer": optimizer,
        "training": training,
        "loss": {k: float(train[k]) for k in LOSS_KEYS if k in train},
        "augment": dict(raw.get("augment") or {}),
        "stages": stages,
    }


__all__ = ["convert_train_default"]
