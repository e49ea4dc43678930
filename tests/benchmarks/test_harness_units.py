"""The harness's own logic, without measuring: interleaved passes, prompts for K objects, config checks."""

import pytest

from mqc_edge.benchmarks.clip import prompt_boxes
from mqc_edge.benchmarks.contestant import ContestantRun
from mqc_edge.benchmarks.harness import BenchConfig, contestant_name, interleave
from mqc_edge.errors import ConfigError


def test_passes_are_interleaved_after_one_unrecorded_warm_up_each():
    calls = []

    def runner(name):
        def run():
            calls.append(name)
            return ContestantRun(name=name, first_mask_ms=float(len(calls)), frame_ms=[float(len(calls))])
        return run

    results = interleave({"a": runner("a"), "b": runner("b"), "c": runner("c")}, repeats=2)
    assert calls == ["a", "b", "c", "a", "b", "c", "a", "b", "c"]
    assert {name: [run.first_mask_ms for run in result.runs] for name, result in results.items()} == {
        "a": [4.0, 7.0], "b": [5.0, 8.0], "c": [6.0, 9.0]}  # warm-up passes (1, 2, 3) are not recorded


def test_prompt_boxes_take_the_objects_first_then_distinct_grown_copies_inside_the_frame():
    boxes = [(10.0, 10.0, 20.0, 30.0), (0.0, 40.0, 64.0, 48.0)]
    assert prompt_boxes(boxes, 1, (50, 64)) == boxes[:1]
    prompts = prompt_boxes(boxes, 5, (50, 64))
    assert prompts[:2] == boxes
    assert prompts[2] == (8.0, 8.0, 22.0, 32.0) and prompts[3] == (0.0, 38.0, 64.0, 50.0)
    assert prompts[4] == (6.0, 6.0, 24.0, 34.0)
    assert len(set(prompts)) == 5
    with pytest.raises(ConfigError, match="no object to prompt"):
        prompt_boxes([], 1, (50, 64))


def test_config_refuses_unknown_modes_and_empty_or_zero_object_counts(tmp_path):
    with pytest.raises(ConfigError, match="bench modes"):
        BenchConfig(tmp_path, tmp_path, modes=("sam3",))
    with pytest.raises(ConfigError, match="bench objects"):
        BenchConfig(tmp_path, tmp_path, objects=(1, 0))
    with pytest.raises(ConfigError, match="bench objects"):
        BenchConfig(tmp_path, tmp_path, objects=())


def test_meta_compiled_is_refused_without_vs_sam2_on_cuda(tmp_path):
    for changes in ({"vs_sam2": False, "device": "cuda"}, {"vs_sam2": True, "device": "cpu"}):
        with pytest.raises(ConfigError, match="--vs-sam2-compiled"):
            BenchConfig(tmp_path, tmp_path, meta_compiled=True, **changes)
    assert BenchConfig(tmp_path, tmp_path, vs_sam2=True, device="cuda:0", meta_compiled=True).meta_compiled


def test_frame_step_is_refused_without_the_torch_backend_in_sam2_mode(tmp_path):
    for changes in ({}, {"backends": ("torch",), "modes": ("mqc",)}):
        with pytest.raises(ConfigError, match="--frame-step: the captured tracking step is the torch backend's"):
            BenchConfig(tmp_path, tmp_path, frame_step=True, **changes)
    assert BenchConfig(tmp_path, tmp_path, vs_pytorch=True, frame_step=True).frame_step


def test_encode_ahead_is_refused_without_the_onnxruntime_backend(tmp_path):
    with pytest.raises(ConfigError, match="--encode-ahead: runs onnxruntime on the CPU; got backends"):
        BenchConfig(tmp_path, tmp_path, backends=("torch",), encode_ahead=True)
    assert BenchConfig(tmp_path, tmp_path, encode_ahead=True).encode_ahead


def test_contestant_names_keep_sam2_mode_plain_and_label_mqc_mode():
    assert contestant_name("onnxruntime", "sam2") == "mqc-edge/onnxruntime"
    assert contestant_name("torch", "mqc") == "mqc-edge/torch (mqc mode)"


def test_run_tracker_records_each_tracked_frame_s_host_syncs():
    from types import SimpleNamespace

    from mqc_edge.benchmarks.tracker_contestant import run_tracker

    syncs = [0]

    class CountingTracker:
        """Three host reads per step, as a backend's counter would see them."""

        def start(self, frame, prompts):
            syncs[0] += 1
            return [[SimpleNamespace(timings_ms={"image_encoder": 1.0})]]

        def step(self, frame):
            syncs[0] += 3
            return [[SimpleNamespace(timings_ms={"image_encoder": 1.0})]]

        def finish(self):
            return [[]]

    run = run_tracker("t", CountingTracker(), [None] * 5, [{"box": (0, 0, 1, 1)}], lambda: syncs[0])
    assert run.syncs == [3, 3, 3, 3] and len(run.frame_ms) == 4
    assert run_tracker("t", CountingTracker(), [None] * 3, [{"box": (0, 0, 1, 1)}]).syncs == []  # no counter


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_bench_device_cuda_fails_in_one_line_when_no_cuda_device_is_visible(tmp_path, capsys):
    from mqc_edge.cli import main

    code = main(["bench", str(tmp_path), "--out", str(tmp_path / "bench"), "--vs-pytorch", "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "device 'cuda': no CUDA device is visible" in err
    assert not (tmp_path / "bench").exists()  # refused before anything ran


def test_a_frame_step_that_cannot_be_captured_is_reported_not_built(tmp_path):
    from types import SimpleNamespace

    from mqc_edge.benchmarks.harness import _capture_frame_steps

    captured = []

    class Backend:
        def __init__(self, fails: bool) -> None:
            self.fails = fails

        def frame_step(self, objects: int) -> None:
            if self.fails and objects > 1:
                raise RuntimeError("operation not permitted when stream is capturing\nmore")
            captured.append(objects)

    config = BenchConfig(tmp_path, tmp_path, backends=("torch",), frame_step=True, objects=(1, 4))
    assert _capture_frame_steps(config, {("torch", ""): SimpleNamespace(backend=Backend(False))}) == {}
    assert captured == [1, 4]  # every object count, before any pass
    assert _capture_frame_steps(config, {("torch", ""): SimpleNamespace(backend=Backend(True))}) == {
        "mqc-edge/torch frame-step": "not built: RuntimeError: operation not permitted when stream is capturing"}
