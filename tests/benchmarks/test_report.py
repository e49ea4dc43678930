"""Report files: JSON equals the report, markdown shows every contestant and stage, plots are PNGs."""

import json

from mqc_edge.benchmarks.report import markdown, write_report


def _stats(p50):
    return {"p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.2, "mean": p50, "n": 10}


REPORT = {
    "config": {"modes": ["sam2"], "objects": [1, 4], "frames": 24, "threads": 2},
    "peak": {"matmul_gflops_median": 300.0, "matmul_gflops_median_after": 290.0, "used_gflops": 310.0},
    "stage_costs": {"image_encoder": {"gflop": 17.5, "floor_ms": 58.0}},
    "contestants": {
        "mqc-edge/onnxruntime": {
            "ms_per_frame": _stats(100.0), "fps": 10.0, "first_mask_ms": _stats(150.0),
            "stages": {"image_encoder": _stats(64.0), "orchestration": _stats(2.0)},
            "orchestration_fraction": 0.02,
            "stage_efficiency": {"image_encoder": {"achieved_gflops": 273.4, "fraction_of_floor": 0.91}},
            "resident_mb_by_frame": [300.0, 300.5, 300.5],
        },
        "meta-sam2-predictor": {
            "ms_per_frame": _stats(180.0), "fps": 5.5, "first_mask_ms": _stats(900.0), "stages": {},
            "stage_efficiency": {}, "resident_mb_by_frame": [400.0, 410.0, 420.0],
        },
    },
    "speedup_vs_sam2": {"mqc-edge/onnxruntime": 1.8},
    "by_objects": {
        count: {"contestants": {"mqc-edge/onnxruntime": {"ms_per_frame": _stats(ms), "fps": 1e3 / ms,
                                                         "stages_p50": {}, "vs_first_count": ms / 100.0}},
                "speedup_vs_sam2": {}}
        for count, ms in (("1", 100.0), ("4", 250.0))
    },
}


def test_markdown_lists_contestants_stages_and_speedup():
    text = markdown(REPORT)
    assert "| mqc-edge/onnxruntime | 100.0 | 110.0 | 120.0 | 10.00 | 150 | 2.0% | 1.80x |" in text
    assert "| mqc-edge/onnxruntime | image_encoder | 64.00 | 70.40 | 76.80 | 17.50 | 273 | 0.91 |" in text
    assert "| meta-sam2-predictor | 180.0 |" in text
    assert "| 4 | mqc-edge/onnxruntime | 250.0 | 275.0 | 4.00 | 2.50x |  |" in text


def test_write_report_files(tmp_path):
    write_report(REPORT, tmp_path)
    assert json.loads((tmp_path / "report.json").read_text()) == REPORT
    assert (tmp_path / "report.md").read_text() == markdown(REPORT)
    for plot in ("stages.png", "memory.png", "objects.png"):
        assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_markdown_names_device_precision_host_syncs_and_contestants_not_built():
    report = json.loads(json.dumps(REPORT))
    report["config"].update(device="cuda", precision="bf16")
    report["contestants"]["mqc-edge/onnxruntime"]["host_syncs_per_frame"] = _stats(4.0)
    report["not_built"] = {"meta-sam2-predictor (vos_optimized)": "not built: RuntimeError: no Triton"}
    text = markdown(report)
    assert "on cuda at bf16" in text
    assert "- mqc-edge/onnxruntime: 4 host-device syncs per frame (p50), max 4.8 (p99)" in text
    assert "- meta-sam2-predictor (vos_optimized): not built: RuntimeError: no Triton" in text
    assert "host-device syncs" not in markdown(REPORT)  # only contestants that count them report it
