"""Benchmark reports: `report.json` (the numbers), `report.md` (for people), PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

from mqc_edge.atomic import write_atomically, write_text_atomically
from mqc_edge.benchmarks.tracker_contestant import ORCHESTRATION


def markdown(report: dict) -> str:
    """The report as markdown tables: contestants, then per-stage latency against the floor."""
    config = report["config"]
    lines = [f"# mqc-edge benchmark ({', '.join(config['modes'])} mode, {config['frames']} frames, "
             f"{config['objects'][0]} object(s), {config['threads']} threads)", "",
             f"MatMul peak used for the floors: {report['peak']['used_gflops']:.0f} GFLOP/s (best pass of a 2048^3 "
             f"MatMul before and after the contestants; medians {report['peak']['matmul_gflops_median']:.0f} before, "
             f"{report['peak']['matmul_gflops_median_after']:.0f} after){_u8s8_line(report['peak'])}.", "",
             "| contestant | ms/frame p50 | p90 | p99 | FPS | first mask ms | orchestration | speedup vs SAM 2 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    speedups = report.get("speedup_vs_sam2", {})
    for name, summary in report["contestants"].items():
        frame = summary["ms_per_frame"]
        overhead = summary.get("orchestration_fraction")
        lines.append(
            f"| {name} | {frame['p50']:.1f} | {frame['p90']:.1f} | {frame['p99']:.1f} | {summary['fps']:.2f} | "
            f"{summary['first_mask_ms']['p50']:.0f} | {'' if overhead is None else f'{100 * overhead:.1f}%'} | "
            f"{'' if name not in speedups else f'{speedups[name]:.2f}x'} |")
    lines += ["", "| contestant | stage | ms p50 | p90 | p99 | GFLOP | GFLOP/s | fraction of floor | MatMul/Conv % of peak |",
              "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, summary in report["contestants"].items():
        for stage, stats in summary["stages"].items():
            lines.append(f"| {name} | {stage} | {stats['p50']:.2f} | {stats['p90']:.2f} | {stats['p99']:.2f} "
                         f"{_efficiency_cells(summary['stage_efficiency'].get(stage))}")
    return "\n".join(lines + _exports_table(report) + _encode_ahead_lines(report) + _objects_table(report)
                     + _device_lines(report)) + "\n"


def _efficiency_cells(efficiency: dict | None) -> str:
    """GFLOP, GFLOP/s, fraction of floor, and the MatMul/Conv GOP/s as % of the stage's peak."""
    if efficiency is None:
        return "| | | | |"
    of_peak = ("" if "fraction_of_peak" not in efficiency else
               f"{100 * efficiency['fraction_of_peak']:.0f}% of {efficiency['peak']} "
               f"({efficiency['achieved_compute_gops']:.0f} GOP/s)")
    return (f"| {efficiency['gflop']:.2f} | {efficiency['achieved_gflops']:.0f} | "
            f"{efficiency['fraction_of_floor']:.2f} | {of_peak} |")


def _exports_table(report: dict) -> list[str]:
    """Several exports of one model side by side: per-stage ms p50 of each, ms/frame, and the speed
    ratios against the first export and against Meta's predictor."""
    if "speedup_vs_first_export" not in report:
        return []
    names = list(report["speedup_vs_first_export"])
    stages = list(dict.fromkeys(stage for name in names for stage in report["contestants"][name]["stages"]))
    vs_meta = report.get("speedup_vs_sam2", {})
    lines = ["", f"Exports side by side ({', '.join(f'{label}: {path}' for label, path in report['exports'].items())}):",
             "", "| ms p50 | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for stage in stages:
        cells = [report["contestants"][name]["stages"].get(stage, {}).get("p50") for name in names]
        lines.append(f"| {stage} | " + " | ".join("" if ms is None else f"{ms:.2f}" for ms in cells) + " |")
    lines.append("| **ms/frame** | " + " | ".join(f"{report['contestants'][n]['ms_per_frame']['p50']:.1f}" for n in names) + " |")
    lines.append("| speed vs first export | " + " | ".join(f"{report['speedup_vs_first_export'][n]:.2f}x" for n in names) + " |")
    if vs_meta:
        lines.append("| speed vs Meta's predictor | " + " | ".join(f"{vs_meta[n]:.2f}x" for n in names) + " |")
    return lines


def _encode_ahead_lines(report: dict) -> list[str]:
    """Encode-ahead contestants (1-thread sessions) against their serial twins (`threads` per session)."""
    if "speedup_encode_ahead" not in report:
        return []
    threads = report["config"]["threads"]
    return ["", f"Encode-ahead (1-thread sessions, image encoder of frame t+1 beside frame t's memory stages) over "
                f"the same export run serially with {threads} threads per session:", ""] + [
        f"- {name}: {ratio:.2f}x" for name, ratio in report["speedup_encode_ahead"].items()]


def _u8s8_line(peak: dict) -> str:
    """The u8s8 MatMulInteger peak that INT8 stages are costed against (absent in older reports)."""
    if "used_u8s8_gops" not in peak:
        return ""
    return (f"; u8s8 MatMulInteger peak for INT8 stages: {peak['used_u8s8_gops']:.0f} GOP/s (medians "
            f"{peak['u8s8_gops_median']:.0f} before, {peak['u8s8_gops_median_after']:.0f} after)")


def _device_lines(report: dict) -> list[str]:
    """The torch device and precision, host-device syncs per frame, and contestants not built."""
    config = report["config"]
    lines = ["", f"Torch contestant and Meta's predictor on {config.get('device', 'cpu')} at "
                 f"{config.get('precision', 'fp32')}."]
    lines += [f"- {name}: {summary['host_syncs_per_frame']['p50']:g} host-device syncs per frame (p50), "
              f"max {summary['host_syncs_per_frame']['p99']:g} (p99)"
              for name, summary in report["contestants"].items() if "host_syncs_per_frame" in summary]
    lines += [f"- {name}: {reason}" for name, reason in report.get("not_built", {}).items()]
    return lines


def _objects_table(report: dict) -> list[str]:
    """ms/frame per object count, with the ratio to the first count and the speed-up over Meta's."""
    if "by_objects" not in report:
        return []
    lines = ["", "| objects | contestant | ms/frame p50 | p90 | FPS | vs first count | speedup vs SAM 2 |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for count, entry in report["by_objects"].items():
        for name, summary in entry["contestants"].items():
            speedup = entry["speedup_vs_sam2"].get(name)
            lines.append(f"| {count} | {name} | {summary['ms_per_frame']['p50']:.1f} | {summary['ms_per_frame']['p90']:.1f} | "
                         f"{summary['fps']:.2f} | {summary['vs_first_count']:.2f}x | "
                         f"{'' if speedup is None else f'{speedup:.2f}x'} |")
    return lines


def _save(figure, path: Path) -> None:
    """Lay out, write atomically as PNG, and free the figure (pyplot keeps every open one)."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    write_atomically(path, lambda tmp: figure.savefig(tmp, dpi=100))
    plt.close(figure)


def _plot_stages(report: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4))
    stage_names = list(dict.fromkeys(stage for summary in report["contestants"].values()
                                     for stage in summary["stages"] or ["whole frame"]))
    colours = {stage: f"C{index % 10}" for index, stage in enumerate(stage_names)}
    for position, summary in enumerate(report["contestants"].values()):
        bottom = 0.0
        for stage, stats in (summary["stages"] or {"whole frame": summary["ms_per_frame"]}).items():
            axes.bar(position, stats["p50"], bottom=bottom, color=colours[stage],
                     hatch="//" if stage == ORCHESTRATION else None)
            bottom += stats["p50"]
    axes.legend([plt.Rectangle((0, 0), 1, 1, color=colours[stage]) for stage in stage_names], stage_names, fontsize=7)
    axes.set_xticks(range(len(report["contestants"])), list(report["contestants"]), rotation=15)
    axes.set_ylabel("ms per frame (p50 per stage)")
    _save(figure, path)


def _plot_memory(report: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for name, summary in report["contestants"].items():
        axes.plot(range(1, len(summary["resident_mb_by_frame"]) + 1), summary["resident_mb_by_frame"], label=name)
    axes.set_xlabel("tracked frames")
    axes.set_ylabel("resident host memory, MiB")
    axes.legend(fontsize=7)
    _save(figure, path)


def _plot_objects(report: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    counts = [int(count) for count in report["by_objects"]]
    for name in next(iter(report["by_objects"].values()))["contestants"]:
        axes.plot(counts, [entry["contestants"][name]["ms_per_frame"]["p50"] for entry in report["by_objects"].values()],
                  marker="o", label=name)
    axes.set_xscale("log", base=2)
    axes.set_xticks(counts, [str(count) for count in counts])
    axes.set_xlabel("objects tracked at once")
    axes.set_ylabel("ms per frame (p50)")
    axes.legend(fontsize=7)
    _save(figure, path)


def write_report(report: dict, out_dir: Path) -> None:
    """report.json, report.md, stages.png, memory.png (and objects.png with several object
    counts) under `out_dir`, each written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    out_dir = Path(out_dir)
    write_text_atomically(out_dir / "report.json", json.dumps(report, indent=1))
    write_text_atomically(out_dir / "report.md", markdown(report))
    _plot_stages(report, out_dir / "stages.png")
    _plot_memory(report, out_dir / "memory.png")
    if "by_objects" in report:
        _plot_objects(report, out_dir / "objects.png")
