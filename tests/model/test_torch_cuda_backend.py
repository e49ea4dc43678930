"""The torch backend as a GPU backend: device pre/post-processing, precisions, sync counting, CUDA graphs.

CPU tests run everywhere; the CUDA ones skip without a GPU and run for real on the GPU machine.
Tolerances, and why:
- device preprocessing vs runtime/preprocess.py: bit-exact (0). The resize applies Pillow's own
  fixed-point weights in float64, where every product and sum is an exact integer, on any device.
- device upsampling vs runtime/postprocess.py on CPU: bit-exact (0), both are torch's CPU kernel;
  on CUDA 1e-6 of the logits' range (CUDA's kernel rounds a*b + c twice, without the fused multiply-add).
- bf16 on CPU vs fp32: low-res logits within 5 % of max |logit| (bf16 keeps 8 significand bits,
  2^-9 relative per rounding, through ~30 layers; measured 1.6 % on these random weights), fp16
  within 1 % (11 bits; measured 0.15 %).
- cuda fp32 vs cpu fp32: 1e-3 of max |logit| (TF32 off; cuDNN and cuBLAS sum in other orders and
  the difference grows through the network: the end-to-end bound of export parity).
- fp16/bf16 vs fp32 on CUDA: mask IoU >= 0.99 on the shipped weights (a precision's acceptance
  gate, DESIGN section 6; random weights give logits near 0 everywhere, where any rounding flips pixels).
- CUDA graph replay vs the eager stage calls: 1e-6 of each output's range (the same kernels on the
  same inputs; the bound only allows for a library choosing another algorithm inside a capture).
- the Tracker with device processing vs the host path, on one device: logits (low-res and frame
  size), uncertainty and scores within 1e-6 of their max magnitude on cpu (measured 0: the same
  image goes in, bit-exact, and the upsampling is the same kernel), 1e-5 on CUDA (the upsampling
  bound above, with room for a library choosing another algorithm between the two runs); masks
  equal except where |logit| is within that bound of 0.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from mqc_edge.errors import ConfigError
from mqc_edge.model import device_processing, torch_backend
from mqc_edge.model.sam2_build import build_sam21
from mqc_edge.model.torch_backend import TorchBackend
from mqc_edge.runtime import postprocess, preprocess
from mqc_edge.runtime.backends.stage_backend import HostProcessing, load_backend
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.mqc.tmcc import TMCCConfig
from mqc_edge.runtime.multi_tracker import MultiTracker
from suite_helpers import track_all

IMAGE_SIZE = 128
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU: runs on the GPU machine (H100/H200)")
SHIPPED = Path(torch_backend.__file__).parent / "weights" / "mqc_sam_default.safetensors"


@pytest.fixture(scope="module")
def sam() -> torch.nn.Module:
    return build_sam21("tiny", IMAGE_SIZE, seed=3)


def _frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 RGB noise plus a smooth gradient: both ties and flat regions for the resize."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, width)[None, :, None] * np.linspace(0.2, 1.0, height)[:, None, None]
    return np.clip(ramp + rng.normal(0, 40, (height, width, 3)), 0, 255).astype(np.uint8)


def _decode(backend: TorchBackend, frame: np.ndarray) -> torch.Tensor:
    """Prompted-frame pipeline on `frame` with a box over its centre: low-res logits [1, 1, S/4, S/4]."""
    size = backend.geometry.image_size
    image = device_processing.preprocess_frame(torch.from_numpy(frame).to(backend.executor.device), size)
    features = backend.run("image_encoder", {"image": image})
    spec = backend.specs["prompt_encoder"]
    box = [[size * 0.3, size * 0.3], [size * 0.7, size * 0.7], [0.0, 0.0]]
    prompt = backend.run("prompt_encoder", {
        "point_coords": backend.from_host(np.array([box], dtype=np.float32)),
        "point_labels": backend.from_host(np.array([[2, 3, -1]], dtype=np.int32)),
        "mask_prompt": backend.zeros(spec.input("mask_prompt")),
        "use_mask": backend.from_host(np.array([False])),
    })
    conditioned = backend.run("no_memory", {"feat": features["feat"]})["feat_conditioned"]
    return backend.run("mask_decoder", {
        "feat_conditioned": conditioned, "fpn0": features["fpn0"], "fpn1": features["fpn1"],
        "sparse_prompt": prompt["sparse_prompt"], "dense_prompt": prompt["dense_prompt"],
        "multimask": backend.from_host(np.array([True])),
    })["mask_lowres"]


# ---- device pre/post-processing against the numpy path -------------------------------------------

@pytest.mark.parametrize("height, width, size", [(480, 640, 128), (100, 150, 128), (60, 80, 256), (128, 128, 128)])
def test_device_preprocess_equals_the_numpy_path_bit_for_bit(height: int, width: int, size: int) -> None:
    frame = _frame(height, width)
    expected = preprocess.preprocess_frame(frame, size)
    got = device_processing.preprocess_frame(torch.from_numpy(frame), size)
    assert got.dtype == torch.float32 and tuple(got.shape) == (1, 3, size, size)
    np.testing.assert_array_equal(got.numpy(), expected)


def test_device_upsample_and_threshold_equal_the_numpy_path() -> None:
    logits = np.random.default_rng(1).normal(0, 3, (32, 32)).astype(np.float32)
    expected = postprocess.upsample_logits(logits, 100, 150)
    got = device_processing.upsample_logits(torch.from_numpy(logits)[None, None], 100, 150)
    assert tuple(got.shape) == (1, 1, 100, 150)
    np.testing.assert_array_equal(got[0, 0].numpy(), expected)  # logits, not only masks
    mask = device_processing.threshold_mask(got)[0, 0].numpy()
    np.testing.assert_array_equal(mask, expected > 0)
    assert 0.2 < mask.mean() < 0.8  # both classes present, so a flipped threshold would show


# ---- the Tracker with device processing -------------------------------------------------------------

CLIP_HEIGHT, CLIP_WIDTH = 90, 150  # not the model size and not square: the resize and upsampling both work
TRACKER_CONFIGS = {
    "sam2": TrackerConfig(mode="sam2"),
    "mqc": TrackerConfig(mode="mqc", tmcc=TMCCConfig(n0=2, dn=2, n_max=4)),  # TMCC, then DAMI tracking
}


def _moving_clip(steps: int = 7) -> list[np.ndarray]:
    """Two textured bright blocks moving right and down on textured ground."""
    rng = np.random.default_rng(5)
    ground = rng.integers(40, 90, size=(CLIP_HEIGHT + 2 * steps, CLIP_WIDTH + 3 * steps, 3), dtype=np.uint8)
    blocks = [rng.integers(170, 255, size=(22, 30, 3), dtype=np.uint8) for _ in range(2)]
    frames = []
    for t in range(steps):
        frame = ground[t:t + CLIP_HEIGHT, :CLIP_WIDTH].copy()
        frame[20:42, 15 + 3 * t:45 + 3 * t] = blocks[0]
        frame[50 + 2 * t:72 + 2 * t, 90:120] = blocks[1]
        frames.append(frame)
    return frames


CLIP_BOXES = ([15, 20, 45, 42], [90, 50, 120, 72])


def _track(backend: TorchBackend, mode: str) -> list:
    """Both objects' FrameResults on the moving clip, one list per object."""
    tracker = MultiTracker(backend, TRACKER_CONFIGS[mode])
    return track_all(tracker, _moving_clip(), [{"box": box} for box in CLIP_BOXES])


def _within(got: np.ndarray, expected: np.ndarray, tolerance: float) -> bool:
    return bool(np.abs(got - expected).max() <= tolerance * max(float(np.abs(expected).max()), 1.0))


def _assert_same_results(got: list, expected: list, tolerance: float) -> None:
    """Per object and frame: low-res and frame-size logits, uncertainty and scores within
    `tolerance` x their max magnitude (at least 1), masks equal except where |logit| is within
    that of 0, the same flags."""
    assert [[r.frame_index for r in one] for one in got] == [[r.frame_index for r in one] for one in expected]
    for one_got, one_expected in zip(got, expected):
        for g, e in zip(one_got, one_expected):
            where = (g.frame_index, g.flags)
            assert _within(g.logits_lowres, e.logits_lowres, tolerance), where  # the same image went in
            assert g.logits.dtype == np.float32 and g.logits.shape == (CLIP_HEIGHT, CLIP_WIDTH)
            assert _within(g.logits, e.logits, tolerance), where
            assert g.mask.dtype == np.bool_
            near_zero = np.abs(e.logits) <= tolerance * max(float(np.abs(e.logits).max()), 1.0)
            assert not (g.mask != e.mask)[~near_zero].any(), where
            assert (g.uncertainty is None) == (e.uncertainty is None)
            if e.uncertainty is not None:
                assert _within(g.uncertainty, e.uncertainty, tolerance), where
            scores = np.array([g.object_score, g.iou]), np.array([e.object_score, e.iou])
            assert g.flags == e.flags and _within(*scores, tolerance), where


def test_device_processing_is_off_on_cpu_unless_asked(sam) -> None:
    host = TorchBackend(sam)
    assert not host.executor.device_processing
    assert host.preprocess.__func__ is HostProcessing.preprocess
    assert host.postprocess.__func__ is HostProcessing.postprocess
    forced = TorchBackend(sam, device_processing=True)
    assert forced.preprocess == forced.executor.preprocess and forced.postprocess == forced.executor.postprocess


@pytest.mark.parametrize("mode", ["sam2", "mqc"])
def test_tracker_with_device_processing_equals_the_host_path_on_cpu(mqc_model_without_text, mode: str) -> None:
    host, device = TorchBackend(mqc_model_without_text), TorchBackend(mqc_model_without_text, device_processing=True)
    expected, got = _track(host, mode), _track(device, mode)
    _assert_same_results(got, expected, 1e-6)
    assert any(r.uncertainty is not None for one in got for r in one)  # the head's map took the device path too
    assert any(r.mask.any() and not r.mask.all() for one in got for r in one)  # both classes were compared
    # one read for everything a frame's postprocess brings back, nothing for the preprocessing
    results = sum(len(one) for one in got)
    assert device.executor.syncs - host.executor.syncs == results


# ---- precisions on CPU -----------------------------------------------------------------------------

def test_fp32_equals_the_unwrapped_stage_modules_exactly(sam) -> None:
    backend = TorchBackend(sam, precision="fp32")
    image = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        reference = backend.stages["image_encoder"](image)
    got = backend.run("image_encoder", {"image": image})
    for name, tensor in zip(("fpn0", "fpn1", "feat"), reference):
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=0)
    torch.testing.assert_close(_decode(backend, _frame(96, 120)), _decode(TorchBackend(sam), _frame(96, 120)),
                               rtol=0, atol=0)


@pytest.mark.parametrize("precision, tolerance", [("bf16", 0.05), ("fp16", 0.01)])
def test_low_precision_on_cpu_runs_and_stays_near_fp32(sam, precision: str, tolerance: float) -> None:
    frame = _frame(96, 120)
    reference = _decode(TorchBackend(sam), frame)
    backend = TorchBackend(sam, precision=precision)
    logits = _decode(backend, frame)
    assert logits.dtype == torch.float32  # the contract's dtype, whatever ran inside
    difference = (logits - reference).abs().max()
    assert 0 < difference <= tolerance * reference.abs().max()  # > 0: the precision did change the arithmetic
    memory = backend.run("memory_encoder", {
        "feat": backend.run("image_encoder", {"image": torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE)})["feat"],
        "mask_lowres": logits, "object_score": torch.ones(1, 1), "binarize": torch.tensor([True]),
    })["memory"]
    assert memory.dtype == torch.float32  # memory slots stay float32


def test_a_precision_the_device_cannot_run_is_refused_by_name_in_one_line(sam, monkeypatch) -> None:
    with pytest.raises(ConfigError, match=r"precision tf32: .*cpu") as tf32:
        TorchBackend(sam, precision="tf32")
    with pytest.raises(ConfigError, match=r"precision: expected one of .*'int4'"):
        TorchBackend(sam, precision="int4")

    def missing_kernel(*args, **kwargs):
        raise NotImplementedError('"scaled_dot_product_attention" not implemented for \'BFloat16\'\nmore detail')

    monkeypatch.setattr(torch_backend.F, "scaled_dot_product_attention", missing_kernel)
    with pytest.raises(ConfigError, match=r"^precision bf16 on cpu: .*not implemented for 'BFloat16'$") as bf16:
        TorchBackend(sam, precision="bf16")
    assert "\n" not in str(tf32.value) + str(bf16.value)


@pytest.mark.skipif(CUDA, reason="checks the refusal on a machine without a CUDA device")
def test_cuda_is_refused_in_one_line_when_no_device_is_visible(sam) -> None:
    with pytest.raises(ConfigError, match=r"^device 'cuda': no CUDA device is visible \(torch .*\)$") as error:
        load_backend("torch", image_size=IMAGE_SIZE, device="cuda")
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match=r"device: expected cpu, cuda or cuda:N, got 'tpu'"):
        TorchBackend(sam, device="tpu")


def test_capture_frame_step_is_refused_on_cpu(sam) -> None:
    with pytest.raises(ConfigError, match=r"^capture_frame_step: CUDA graphs need a CUDA device; .* on cpu$"):
        TorchBackend(sam).executor.capture_frame_step()


def test_sync_counter_counts_host_reads_and_synchronize_calls(sam) -> None:
    backend = TorchBackend(sam)
    executor = backend.executor
    logits = _decode(backend, _frame(64, 64))
    assert executor.syncs == 0  # stage calls and host -> device copies never wait for the device
    for expected in (1, 2, 3):
        assert backend.to_host(logits).shape == (1, 1, IMAGE_SIZE // 4, IMAGE_SIZE // 4)
        assert executor.syncs == expected
    executor.synchronize()
    assert executor.syncs == 4


# ---- on a CUDA GPU -----------------------------------------------------------------------------------

@needs_cuda
def test_cuda_fp32_logits_match_cpu_fp32(sam) -> None:
    frame = _frame(96, 120)
    cpu = _decode(TorchBackend(copy.deepcopy(sam)), frame)
    cuda = _decode(TorchBackend(copy.deepcopy(sam), device="cuda"), frame)
    assert cuda.device.type == "cuda"
    assert (cuda.cpu() - cpu).abs().max() <= 1e-3 * cpu.abs().max()


@needs_cuda
def test_cuda_device_processing_matches_the_numpy_path() -> None:
    frame = _frame(480, 640)
    image = device_processing.preprocess_frame(torch.from_numpy(frame).cuda(), 256)
    np.testing.assert_array_equal(image.cpu().numpy(), preprocess.preprocess_frame(frame, 256))
    logits = np.random.default_rng(1).normal(0, 3, (64, 64)).astype(np.float32)
    upsampled = device_processing.upsample_logits(torch.from_numpy(logits).cuda(), 480, 640).cpu().numpy()
    expected = postprocess.upsample_logits(logits, 480, 640)
    assert np.abs(upsampled - expected).max() <= 1e-6 * np.abs(expected).max()


@pytest.fixture(scope="module")
def shipped_on_cuda() -> dict[str, TorchBackend]:
    return {precision: torch_backend.load(checkpoint=SHIPPED, device="cuda", precision=precision, text_model=False)
            for precision in ("fp32", "fp16", "bf16")} if CUDA else {}


@needs_cuda
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_low_precision_masks_match_fp32(shipped_on_cuda, precision: str) -> None:
    for seed in range(3):
        frame = _frame(240, 320, seed)
        reference = _decode(shipped_on_cuda["fp32"], frame) > 0
        masks = _decode(shipped_on_cuda[precision], frame) > 0
        union = (reference | masks).sum()
        assert union > 0
        assert (reference & masks).sum() / union >= 0.99, (precision, seed)


@needs_cuda
@pytest.mark.parametrize("weights", ["random", "shipped"])
@pytest.mark.parametrize("mode", ["sam2", "mqc"])
def test_cuda_tracker_with_device_processing_equals_the_host_path(request, weights: str, mode: str) -> None:
    """Random weights bring the uncertainty head; the shipped ones masks with edges (logits crossing 0)."""
    if weights == "random":
        model = copy.deepcopy(request.getfixturevalue("mqc_model_without_text"))  # the session model stays on cpu
    else:
        model = request.getfixturevalue("shipped_on_cuda")["fp32"].model
    device = TorchBackend(model, device="cuda")
    host = TorchBackend(model, device="cuda", device_processing=False)
    assert device.executor.device_processing  # the default on CUDA, so `mqc-edge bench --device cuda` has it
    expected, got = _track(host, mode), _track(device, mode)
    _assert_same_results(got, expected, 1e-5)
    assert device.executor.syncs - host.executor.syncs == sum(len(one) for one in got)


@needs_cuda
def test_cuda_graph_replay_equals_the_eager_stage_calls(sam) -> None:
    backend = TorchBackend(copy.deepcopy(sam), device="cuda")
    graph = backend.executor.capture_frame_step(objects=2)
    generator = torch.Generator(device="cuda").manual_seed(0)
    for name, tensor in graph.inputs.items():
        if tensor.is_floating_point():
            tensor.copy_(torch.randn(tensor.shape, generator=generator, device="cuda"))
    graph.inputs["memory_valid"].fill_(True)
    graph.inputs["obj_ptr_valid"][:, :3] = True
    graph.inputs["multimask"].fill_(True)
    graph.inputs["binarize"].fill_(True)
    graph.inputs["memory_tpos"].copy_(torch.arange(7).repeat(2, 1))
    outputs = {name: tensor.clone() for name, tensor in graph.replay().items()}
    torch.cuda.synchronize()
    eager: dict[str, torch.Tensor] = {}
    for spec in graph.specs:
        # a stage reads what an earlier stage of the step produced, else the graph's static input
        arguments = {t.name: eager[t.name] if t.name in eager else graph.inputs[t.name] for t in spec.inputs}
        eager.update(backend.run(spec.name, arguments))
    assert set(outputs) == set(eager)
    for name, tensor in eager.items():
        assert (outputs[name] - tensor).abs().max() <= 1e-6 * tensor.abs().max().clamp(min=1.0), name


# ---- the Tracker through the captured frame step (TrackerConfig.frame_step) ---------------------------

FRAME_STEP = TrackerConfig(mode="sam2", frame_step=True)


def _frame_step_pair(request, weights: str, device: str) -> tuple[TorchBackend, TorchBackend]:
    """Two backends on one model: stage by stage, and through the frame step."""
    if weights == "random":  # MQC-SAM in SAM 2 mode: the uncertainty stage reads the step's features
        model = copy.deepcopy(request.getfixturevalue("mqc_model_without_text"))
        return TorchBackend(model, device=device), TorchBackend(model, device=device)
    loaded = torch_backend.load(checkpoint=SHIPPED, device=device, text_model=False)
    return loaded, TorchBackend(loaded.model, device=device)


@pytest.mark.parametrize("weights", ["random", "shipped"])
def test_tracker_frame_step_equals_the_stage_by_stage_tracker_on_cpu(request, weights: str) -> None:
    """On cpu the step runs eagerly on its static buffers (no graph): the glue the CUDA graph
    replays, checked here. The same kernels on the same inputs: within 1e-6 (measured 0)."""
    staged, stepped = _frame_step_pair(request, weights, "cpu")
    expected = track_all(MultiTracker(staged, TRACKER_CONFIGS["sam2"]), _moving_clip(), [{"box": b} for b in CLIP_BOXES])
    got = track_all(MultiTracker(stepped, FRAME_STEP), _moving_clip(), [{"box": b} for b in CLIP_BOXES])
    _assert_same_results(got, expected, 1e-6)
    tracked = got[0][1].timings_ms
    assert "frame_step" in tracked and "memory_attention" not in tracked and "image_encoder" not in tracked
    assert all(np.ptp(r.logits) > 1e-2 for one in expected for r in one[1:])  # logits, not a no-object fill


@needs_cuda
@pytest.mark.parametrize("weights", ["random", "shipped"])
def test_cuda_tracker_frame_step_graph_equals_the_stage_by_stage_tracker(request, weights: str) -> None:
    """The CUDA graph replay inside the Tracker: within 1e-5 of the eager stage calls on the same
    GPU (the bound of the device-processing test above)."""
    staged, stepped = _frame_step_pair(request, weights, "cuda")
    expected = track_all(MultiTracker(staged, TRACKER_CONFIGS["sam2"]), _moving_clip(), [{"box": b} for b in CLIP_BOXES])
    got = track_all(MultiTracker(stepped, FRAME_STEP), _moving_clip(), [{"box": b} for b in CLIP_BOXES])
    _assert_same_results(got, expected, 1e-5)
    assert stepped.executor.syncs < staged.executor.syncs


def test_frame_step_is_sam2_mode_only_and_needs_a_backend_that_has_one(sam) -> None:
    from mqc_edge.runtime.tracker import Tracker

    with pytest.raises(ConfigError, match=r"^frame_step: the captured tracking step is SAM 2 mode's"):
        TrackerConfig(mode="mqc", frame_step=True)

    class NoFrameStep:
        geometry = TorchBackend(sam).geometry
        description = "a backend without one"

    with pytest.raises(ConfigError, match=r"^frame_step: this backend \(a backend without one\) has no captured"):
        Tracker(NoFrameStep(), FRAME_STEP)


def test_frame_step_refuses_an_input_of_the_wrong_shape(sam) -> None:
    from mqc_edge.errors import StageContractError

    step = TorchBackend(sam).frame_step(objects=2)
    one_object = torch.zeros((1, *step.inputs["memory"].shape[1:]))
    with pytest.raises(StageContractError, match=r"^frame step input 'memory': expected \(2, 7, "):
        step.replay({"memory": one_object})
