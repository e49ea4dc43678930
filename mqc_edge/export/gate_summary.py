"""Several builds' accuracy gates side by side: one markdown table from their `build_report.json`.

    python -m mqc_edge.export.gate_summary DIR2 [DIR2 ...]

One row per build and mode (per-frame mask IoU with the FP32 export, mean and min; max logit
error; J&F of both against the ground truth and the delta in points; the verdict), then, for a
build that measured it (`mixed`), one row per stage quantized alone. This is how docs/precision.md's
tables are made (scripts/precision_gates.sh).

Raises BuildReportError (exit 2, one line) for a folder without a readable build report.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mqc_edge.errors import MqcEdgeError

REPORT_FILE = "build_report.json"
HEADER = ["| build | precision | mode | IoU mean | IoU min | max logit err | J&F FP32 | J&F build | delta (pts) | gate |",
          "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
SENSITIVITY_HEADER = ["| build | stage alone | mode | IoU mean | IoU min | delta (pts) | within gate |",
                      "|---|---|---|---:|---:|---:|---|"]


class BuildReportError(MqcEdgeError):
    """A folder without a readable build report."""


def read_report(folder: Path) -> dict[str, Any]:
    """`folder/build_report.json` as a dict; raises BuildReportError naming the file."""
    path = folder / REPORT_FILE
    try:
        report = json.loads(path.read_text())
        report["gate"]["modes"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise BuildReportError(f"{path}: not a build report of `mqc-edge build` ({type(error).__name__}: {error})") from None
    return report


def _delta(mode: dict[str, Any]) -> str:
    return "-" if mode["jf_delta_points"] is None else f"{mode['jf_delta_points']:+.3f}"


def _jf(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def gate_rows(name: str, report: dict[str, Any]) -> list[str]:
    """One markdown row per mode of the build's own gate."""
    precisions = sorted(set(report["stages"].values()))
    return [f"| {name} | {'/'.join(precisions)} | {mode} | {m['mask_iou_mean']:.4f} | {m['mask_iou_min']:.4f} | "
            f"{m['max_logit_abs']:.3g} | {_jf(m['jf_reference'])} | {_jf(m['jf_candidate'])} | {_delta(m)} | "
            f"{'pass' if m['passed'] else 'FAIL'} |"
            for mode, m in sorted(report["gate"]["modes"].items())]


def sensitivity_rows(name: str, report: dict[str, Any]) -> list[str]:
    """One markdown row per stage and mode of the build's per-stage sensitivity (empty when not measured)."""
    return [f"| {name} | {stage} | {mode} | {m['mask_iou_mean']:.4f} | {m['mask_iou_min']:.4f} | {_delta(m)} | "
            f"{'yes' if sens['passed'] else 'no'} |"
            for stage, sens in (report.get("sensitivity") or {}).items()
            for mode, m in sorted(sens["modes"].items())]


def summary(folders: list[Path]) -> str:
    """The markdown tables of `folders`' builds (module docstring)."""
    reports = [(folder.name, read_report(folder)) for folder in folders]
    lines = [*HEADER, *(row for name, report in reports for row in gate_rows(name, report))]
    sensitivity = [row for name, report in reports for row in sensitivity_rows(name, report)]
    if sensitivity:
        lines += ["", *SENSITIVITY_HEADER, *sensitivity]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("builds", type=Path, nargs="+", help="output folders of `mqc-edge build`")
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(summary(args.builds))
    except BuildReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
