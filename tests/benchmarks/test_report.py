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
            "stage_efficiency": {"image_encoder": {"gflop": 17.5, "achieved_gflops": 273.4, "fraction_of_floor": 0.91}},
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


def test_markdown_puts_exports_side_by_side_and_an_int8_stage_against_the_u8s8_peak():
    report = json.loads(json.dumps(REPORT))
    report["peak"].update(used_u8s8_gops=180.0, u8s8_gops_median=170.0, u8s8_gops_median_after=175.0)
    int8 = json.loads(json.dumps(report["contestants"]["mqc-edge/onnxruntime"]))
    int8["ms_per_frame"], int8["stages"]["image_encoder"] = _stats(50.0), _stats(32.0)
    int8["stage_efficiency"]["image_encoder"] = {"gflop": 17.5, "achieved_gflops": 546.9, "fraction_of_floor": 0.5,
                                                 "achieved_compute_gops": 108.0, "peak": "u8s8", "fraction_of_peak": 0.6}
    report["contestants"] = {"mqc-edge/onnxruntime fp32": report["contestants"]["mqc-edge/onnxruntime"],
                             "mqc-edge/onnxruntime int8": int8, "meta-sam2-predictor": report["contestants"]["meta-sam2-predictor"]}
    report["exports"] = {"fp32": "/e/fp32", "int8": "/e/int8"}
    report["speedup_vs_first_export"] = {"mqc-edge/onnxruntime fp32": 1.0, "mqc-edge/onnxruntime int8": 2.0}
    report["speedup_vs_sam2"] = {"mqc-edge/onnxruntime fp32": 1.8, "mqc-edge/onnxruntime int8": 3.6}
    text = markdown(report)
    assert "u8s8 MatMulInteger peak for INT8 stages: 180 GOP/s" in text
    assert "| mqc-edge/onnxruntime int8 | image_encoder | 32.00 | 35.20 | 38.40 | 17.50 | 547 | 0.50 | 60% of u8s8 (108 GOP/s) |" in text
    assert "| image_encoder | 64.00 | 32.00 |" in text and "| **ms/frame** | 100.0 | 50.0 |" in text
    assert "| speed vs first export | 1.00x | 2.00x |" in text and "| speed vs Meta's predictor | 1.80x | 3.60x |" in text
