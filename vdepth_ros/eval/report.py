"""`vdepth-eval`'s report: the results as a markdown table with the goal lines, and `results.json` +
`results.md` written into the output folder, which is checked before any work (`prepare_output`) and
never replaces a file of the user's (only an earlier report, with `--overwrite`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence


def markdown(results: dict[str, Any]) -> str:
    """The results as a markdown table + goal lines."""
    lines = [
        _MD_HEAD + " AbsRel ↓ | δ1 ↑ | TAE ×100 ↓ | nearness gain (→1) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, d in results["datasets"].items():
        for method, m in d["methods"].items():
            tae = "–" if m["tae"] is None else f"{m['tae']:.3f}"
            gain = "–" if m.get("nearness_gain") is None else f"{m['nearness_gain']:.2f}"
            lines.append(
                f"| {name} | {d['frames']} | {method} | {m['abs_rel']:.3f} | {m['delta1']:.3f} | {tae} | {gain} |"
            )
    lines.append("")
    for name, d in results["datasets"].items():
        lines += [f"- {name} · note: {n}" for n in d.get("notes", [])]
        for goal, g in d.get("goals", {}).items():
            vals = ", ".join(f"{k}={v:.4f}" for k, v in g.items() if isinstance(v, float))
            lines.append(f"- {name} · {goal}: {'PASS' if g['pass'] else 'FAIL'} ({vals})")
    speed = results["meta"].get("speed")
    if speed:
        spec = results["meta"].get("spec", {})
        lines.append(
            f"- speed ({results['meta']['backend']}, {spec.get('frames')}×{spec.get('height')}×{spec.get('width')}): "
            f"{speed['window_s']:.3f} s per window, {speed['fps']:.1f} new frames/s amortised"
        )
    pipe = results["meta"].get("pipeline")
    if pipe:
        params = Path(results["meta"].get("params_file", "")).name
        lines.append(
            f"- offline and stream runs: alignment {pipe['alignment']}, {pipe['schedule']} windows "
            f"{pipe['window']}/{pipe['overlap']}, publish first output, params {params}"
        )
    return "\n".join(lines) + "\n"


REPORT_FILES = ("results.json", "results.md")
#: the first line of every results.md (`markdown`)
_MD_HEAD = "| dataset | frames | method |"


def _not_a_report(path: Path) -> str | None:
    """What an existing results.json / results.md is instead of an earlier vdepth-eval report, or None:
    --overwrite replaces reports, never a folder or another file of the user's."""
    if path.is_dir():
        return "a folder, not a report"
    try:
        text = path.read_text()
        if path.suffix == ".md":
            ours = text.startswith(_MD_HEAD)
        else:
            report = json.loads(text)
            ours = isinstance(report, dict) and {"datasets", "meta"} <= report.keys()
    except (OSError, ValueError):
        ours = False
    return None if ours else "not a vdepth-eval report"


def prepare_output(out: Path, *, overwrite: bool = False, inputs: Sequence[Path] = ()) -> None:
    """Create the output folder and refuse results that would replace existing ones, before any work.

    Args:
        inputs: the evaluation data folder: the reports may not go in it (a dataset's folder is not ours).

    Raises:
        OutputExistsError: `results.json` or `results.md` exists in `out` and `overwrite` is false, or it is
            not an earlier report.
        OfflineError: `out` is a file, is in the evaluation data, cannot be created or written, or holds a
            folder named like a report.
    """
    from vdepth_ros.offline.atomic import check_output_path
    from vdepth_ros.offline.errors import OfflineError

    if out.exists() and not out.is_dir():
        raise OfflineError(f"output {out} is a file, not a folder; choose another --out")
    for name in REPORT_FILES:  # before the folder is made: `--out` inside the data wrote into a dataset
        check_output_path(out / name, overwrite=True, inputs=inputs)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OfflineError(f"cannot create the output folder {out}: {err.strerror or err}") from None
    if not os.access(out, os.W_OK):
        raise OfflineError(f"cannot write to the output folder {out}")
    for name in REPORT_FILES:
        if (out / name).is_dir():  # --overwrite replaces reports, never a folder of the user's
            raise OfflineError(f"{out / name} is a folder, not a report; choose another --out")
        check_output_path(out / name, overwrite=overwrite, replaceable=_not_a_report)


def write_report(results: dict[str, Any], out: Path, *, overwrite: bool = False) -> tuple[Path, Path]:
    """`results.json` and `results.md` in `out`, each written through `AtomicOutput` (temporary name, renamed).

    Raises:
        OutputExistsError: one of them exists and `overwrite` is false (nothing is written then).
        OfflineError: a file cannot be written.
    """
    from vdepth_ros.offline.atomic import AtomicOutput
    from vdepth_ros.offline.errors import OfflineError

    prepare_output(out, overwrite=overwrite)
    texts = (json.dumps(results, indent=2, sort_keys=True) + "\n", markdown(results))
    paths = tuple(out / name for name in REPORT_FILES)
    for path, text in zip(paths, texts, strict=True):
        try:
            with AtomicOutput(path, overwrite=overwrite, replaceable=_not_a_report) as tmp:
                tmp.write_text(text)
        except OSError as err:  # e.g. a full disk
            raise OfflineError(f"cannot write {path}: {err.strerror or err}") from None
    return paths[0], paths[1]
