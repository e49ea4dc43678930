"""Several builds' accuracy gates side by side: one markdown table from their `build_report.json`.

    python -m mqc_edge.precision.gate_summary DIR2 [DIR2 ...]

One row per build and mode, the build report's own gate row (`precision_gate.format_gate`: frames,
per-frame mask IoU with the FP32 export, mean and min; max logit error; J&F of both against the
ground truth and the delta in points; the verdict), then, for a build that measured it (`mixed`),
one row per stage quantized alone and mode. This is how docs/precision.md's
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
from mqc_edge.precision.gate import format_gate

REPORT_FILE = "build_report.json"
PREFIX_HEADER = "| build | precision "
SENSITIVITY_PREFIX_HEADER = "| build | stage alone "


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


def _header(prefix: str) -> list[str]:
    """`format_gate`'s header and rule with the columns of `prefix` in front."""
    header, rule = format_gate({"modes": {}})
    return [prefix + header, "|---" * prefix.count("|") + rule]


def gate_rows(name: str, report: dict[str, Any]) -> list[str]:
    """The build's own gate, one markdown row per mode (`format_gate`'s) after its name and precisions."""
    precisions = "/".join(sorted(set(report["stages"].values())))
    table = format_gate(report["gate"])
    return [f"| {name} | {precisions} " + row for row in table[2:]]


def sensitivity_rows(name: str, report: dict[str, Any]) -> list[str]:
    """Per stage quantized alone (a `mixed` build's sensitivity; empty when not measured): one row per mode
    after the build's name and the stage with its verdict, the weight nodes node sensitivity left FP32,
    and whether the combination sent it back to FP32."""
    dropped = {drop["stage"] for drop in report.get("dropped") or []}
    return [f"| {name} | {_stage_label(stage, sens, stage in dropped)} " + row
            for stage, sens in (report.get("sensitivity") or {}).items() for row in format_gate(sens)[2:]]


def _stage_label(stage: str, sens: dict[str, Any], dropped: bool) -> str:
    nodes = f", {len(sens['fp32_nodes'])} nodes FP32" if sens.get("fp32_nodes") else ""
    combination = ", FP32 in the combination" if dropped else ""
    return f"{stage} ({'within' if sens['passed'] else 'outside'}{nodes}{combination})"


def summary(folders: list[Path]) -> str:
    """The markdown tables of `folders`' builds (module docstring)."""
    reports = [(folder.name, read_report(folder)) for folder in folders]
    lines = _header(PREFIX_HEADER) + [row for name, report in reports for row in gate_rows(name, report)]
    sensitivity = [row for name, report in reports for row in sensitivity_rows(name, report)]
    if sensitivity:
        lines += ["", *_header(SENSITIVITY_PREFIX_HEADER), *sensitivity]
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
