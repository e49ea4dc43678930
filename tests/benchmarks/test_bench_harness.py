"""`mqc-edge bench` end to end on the session's tiny export: every contestant measured, the
report consistent with itself, the cost model read from the exported graphs."""

import json

from mqc_edge.cli import main


def test_bench_runs_every_contestant_and_writes_a_consistent_report(exported, tmp_path, capsys):
    export_dir = exported[0]
    out = tmp_path / "bench"
    code = main(["bench", str(export_dir), "--out", str(out), "--frames", "5", "--repeats", "2", "--threads", "1",
                 "--vs-pytorch", "--vs-sam2", "--clip-size", "160", "--frame-step"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    contestants = report["contestants"]
    assert set(contestants) == {"mqc-edge/onnxruntime", "mqc-edge/torch", "mqc-edge/torch frame-step",
                                "meta-sam2-predictor"}
    assert {"frame_step", "preprocess"} <= set(contestants["mqc-edge/torch frame-step"]["stages"])
    assert "memory_attention" not in contestants["mqc-edge/torch frame-step"]["stages"]
    for name, summary in contestants.items():
        assert summary["ms_per_frame"]["n"] == 2 * 4, name  # 2 repeats x 4 tracked frames
        assert summary["ms_per_frame"]["p50"] <= summary["ms_per_frame"]["p90"] <= summary["ms_per_frame"]["p99"]
        assert len(summary["resident_mb_by_frame"]) == 4
    ours = contestants["mqc-edge/onnxruntime"]
    stage_sum = sum(stats["p50"] for stats in ours["stages"].values())
    assert 0.5 < stage_sum / ours["ms_per_frame"]["p50"] < 1.5  # stages + overhead account for the frame
    assert {"image_encoder", "memory_attention", "mask_decoder", "memory_encoder", "orchestration"} <= set(ours["stages"])
    assert report["stage_costs"]["image_encoder"]["gflop"] > report["stage_costs"]["mask_decoder"]["gflop"] > 0
    efficiency = ours["stage_efficiency"]["image_encoder"]
    expected = report["stage_costs"]["image_encoder"]["gflop"] / (ours["stages"]["image_encoder"]["p50"] / 1e3)
    assert abs(efficiency["achieved_gflops"] - expected) < 1e-3 * expected  # the report rounds ms to 0.001
    meta_ms = contestants["meta-sam2-predictor"]["ms_per_frame"]["p50"]
    assert abs(report["speedup_vs_sam2"]["mqc-edge/onnxruntime"] - meta_ms / ours["ms_per_frame"]["p50"]) < 1e-9
    assert "speedup vs SAM 2" in capsys.readouterr().out
    assert (out / "stages.png").is_file() and (out / "memory.png").is_file()


def test_bench_sweeps_object_counts_and_modes_in_one_run(exported, tmp_path):
    out = tmp_path / "bench"
    code = main(["bench", str(exported[0]), "--out", str(out), "--frames", "12", "--repeats", "1", "--threads", "1",
                 "--vs-sam2", "--clip-size", "160", "--objects", "1", "3", "--modes", "sam2", "mqc"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    names = {"mqc-edge/onnxruntime", "mqc-edge/onnxruntime (mqc mode)", "meta-sam2-predictor"}
    assert set(report["contestants"]) == names and set(report["by_objects"]) == {"1", "3"}
    for count, entry in report["by_objects"].items():
        assert set(entry["contestants"]) == names
        assert set(entry["speedup_vs_sam2"]) == names - {"meta-sam2-predictor"}
    one, three = (report["by_objects"][count]["contestants"]["mqc-edge/onnxruntime"] for count in ("1", "3"))
    assert one["vs_first_count"] == 1.0
    assert three["vs_first_count"] == three["ms_per_frame"]["p50"] / one["ms_per_frame"]["p50"]
    assert three["stages_p50"]["memory_attention"] > 0
    assert (out / "objects.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_encode_ahead_runs_beside_its_serial_twin_with_their_ratio(exported, tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["bench", str(exported[0]), "--out", str(out), "--frames", "6", "--repeats", "1", "--threads", "2",
                 "--clip-size", "160", "--encode-ahead"])
    report = json.loads((out / "report.json").read_text())
    serial, ahead = "mqc-edge/onnxruntime", "mqc-edge/onnxruntime encode-ahead"
    assert code == 0 and set(report["contestants"]) == {serial, ahead}
    assert report["contestants"][serial]["ms_per_frame"]["n"] == 5
    assert report["contestants"][ahead]["ms_per_frame"]["n"] == 4  # its first step emits nothing, finish the last
    ms = {name: report["contestants"][name]["ms_per_frame"]["p50"] for name in (serial, ahead)}
    assert report["speedup_encode_ahead"] == {ahead: ms[serial] / ms[ahead]}
    # overlapping stages add up to more than the frame: no orchestration is derived for them
    assert "orchestration" in report["contestants"][serial]["stages"]
    assert "orchestration" not in report["contestants"][ahead]["stages"]
    assert "orchestration_fraction" not in report["contestants"][ahead]
    assert "over the same export run serially with 2 threads per session" in capsys.readouterr().out
