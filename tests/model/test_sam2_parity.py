"""Our torch-free Tracker on the torch stage backend reproduces Meta's SAM2VideoPredictor.

Same weights (one random SAM 2.1 tiny per seed, at 256 px, saved once and loaded by both),
same 24-frame JPEG clip, same prompt on frame 0. Compared on frame-size logits, not only on
masks: random weights give logits of about +-0.3, where thresholded masks hide errors.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sam2.build_sam import build_sam2_video_predictor
from sam2.utils import misc as sam2_misc
from sam2.utils.misc import fill_holes_in_mask_scores, load_video_frames

from mqc_edge.model.sam2_build import SAM21_CONFIGS, build_sam21, hydra_overrides, save_weights
from mqc_edge.model.torch_backend import TorchBackend
from mqc_edge.runtime.postprocess import fill_holes, upsample_logits
from mqc_edge.runtime.preprocess import preprocess_frame
from mqc_edge.runtime.prompts import mask_prompt_input
from mqc_edge.contract import ModelGeometry
from mqc_edge.default_model import DEFAULT_WEIGHTS
from mqc_edge.runtime.tracker import Tracker, TrackerConfig

IMAGE_SIZE = 256
NUM_FRAMES = 24
FRAME_H, FRAME_W = 240, 320
BOX = [96.0, 70.0, 176.0, 130.0]
POINTS, LABELS = [[136.0, 100.0]], [1]
MAX_ABS_LOGIT = 1e-4
BFLOAT16_MEMORY_LOGIT = 1e-3  # relative; bfloat16 memories on both sides (test_trained_default_matches_meta_predictor)
MEAN_IOU, MIN_IOU = 0.999, 0.995


def connected_components_bfs(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CPU stand-in for `sam2._C.get_connected_componnets`: 8-connected labels and, per
    pixel, the area of its component ([N, 1, H, W] each; 0 on background)."""
    binary = mask.to(torch.uint8).numpy()
    labels, areas = np.zeros(binary.shape, np.int32), np.zeros(binary.shape, np.int32)
    for n in range(binary.shape[0]):
        plane, label = binary[n, 0], 0
        for start in zip(*np.nonzero(plane)):
            if labels[n, 0][start]:
                continue
            label += 1
            stack, members = [start], []
            labels[n, 0][start] = label
            while stack:
                y, x = stack.pop()
                members.append((y, x))
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        ny, nx = y + dy, x + dx
                        inside = 0 <= ny < plane.shape[0] and 0 <= nx < plane.shape[1]
                        if inside and plane[ny, nx] and not labels[n, 0][ny, nx]:
                            labels[n, 0][ny, nx] = label
                            stack.append((ny, nx))
            for member in members:
                areas[n, 0][member] = len(members)
    return torch.from_numpy(labels), torch.from_numpy(areas)


def _object_mask(t: int) -> np.ndarray:
    yy, xx = np.mgrid[:FRAME_H, :FRAME_W]
    cx, cy = 136 + 4 * t, 100 + 2 * t
    return ((xx - cx) / 40.0) ** 2 + ((yy - cy) / 30.0) ** 2 <= 1.0


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A striped ellipse drifting over a noise background, as JPEGs named 00000.jpg..."""
    folder = tmp_path_factory.mktemp("clip")
    rng = np.random.default_rng(7)
    background = rng.integers(0, 256, size=(FRAME_H, FRAME_W, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:FRAME_H, :FRAME_W]
    stripes = np.where(((xx + yy) // 6) % 2 == 0, 230, 160).astype(np.uint8)
    for t in range(NUM_FRAMES):
        frame = background.copy()
        inside = _object_mask(t)
        frame[inside] = np.stack([stripes, stripes // 2, 255 - stripes], axis=-1)[inside]
        Image.fromarray(frame).save(folder / f"{t:05d}.jpg", quality=95)
    return folder


def _frames(folder: Path) -> list[np.ndarray]:
    return [np.array(Image.open(folder / f"{t:05d}.jpg").convert("RGB")) for t in range(NUM_FRAMES)]


def _prompt(kind: str) -> dict:
    if kind == "box":
        return {"box": BOX}
    if kind == "points":
        return {"points": POINTS, "labels": LABELS}
    return {"mask": _object_mask(0)}


def _run_meta(checkpoint: Path, clip: Path, kind: str, variant: str = "tiny",
              image_size: int = IMAGE_SIZE) -> list[np.ndarray]:
    predictor = build_sam2_video_predictor(
        SAM21_CONFIGS[variant], str(checkpoint), device="cpu", hydra_overrides_extra=hydra_overrides(variant, image_size)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = predictor.init_state(str(clip))
        prompt = _prompt(kind)
        if kind == "mask":
            predictor.add_new_mask(state, frame_idx=0, obj_id=1, mask=prompt["mask"])
        else:
            predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, **prompt)
        return [masks[0, 0].numpy().copy() for _, _, masks in predictor.propagate_in_video(state)]


def _run_ours(model: torch.nn.Module, clip: Path, kind: str, fill_hole_area: int) -> list:
    tracker = Tracker(TorchBackend(model), TrackerConfig(fill_hole_area=fill_hole_area))
    frames = _frames(clip)
    results = tracker.start(frames[0], **_prompt(kind))
    for frame in frames[1:]:
        results += tracker.step(frame)
    return results


def _logit_scale(meta: list[np.ndarray]) -> float:
    """The clip's largest |logit| (at least 1), no-object fills (-1024) left out."""
    return max(1.0, max(float(np.abs(m[m > -1000]).max(initial=0.0)) for m in meta))


def _compare(meta: list[np.ndarray], ours: list, label: str, relative: bool = False,
             bound: float = MAX_ABS_LOGIT, frames: int = NUM_FRAMES) -> tuple[float, float, float]:
    """Logits of the first `frames` frames within `bound` (of the largest |logit| of the clip when
    `relative`: trained weights give logits of tens, where float32 summation order alone moves them
    by ~1e-5)."""
    assert len(meta) == len(ours) == NUM_FRAMES
    meta, ours = meta[:frames], ours[:frames]
    diffs, ious = [], []
    for reference, result in zip(meta, ours):
        assert result.logits.shape == reference.shape == (FRAME_H, FRAME_W)
        diffs.append(float(np.abs(reference - result.logits).max()))
        union = np.logical_or(reference > 0, result.mask).sum()
        ious.append(1.0 if union == 0 else np.logical_and(reference > 0, result.mask).sum() / union)
    areas = [float((m > 0).mean()) for m in meta]
    print(f"\n{label}: max|dlogit| {max(diffs):.2e}, IoU mean {np.mean(ious):.6f} min {min(ious):.6f}, "
          f"mask area {min(areas):.3f}..{max(areas):.3f}")
    assert max(areas) > 0.001, "Meta's masks are all empty: the comparison would be vacuous"
    scale = _logit_scale(meta) if relative else 1.0
    assert max(diffs) <= bound * scale
    assert np.mean(ious) >= MEAN_IOU and min(ious) >= MIN_IOU
    return max(diffs), float(np.mean(ious)), min(ious)


# Seed 9's random model finds the object on frame 0 (object score > 0 for box and points), so
# the tracking path with an object is compared, not only the no-object path.
@pytest.fixture(scope="module", params=[0, 9], ids=["seed0", "seed9"])
def weights(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    model = build_sam21("tiny", IMAGE_SIZE, seed=request.param)
    checkpoint = tmp_path_factory.mktemp("weights") / f"sam21_tiny_seed{request.param}.pt"
    save_weights(model, checkpoint)
    return model, checkpoint


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["box", "points"])
def test_tracker_matches_meta_predictor(weights: tuple, clip: Path, kind: str) -> None:
    """Meta without its CUDA extension skips hole filling, so ours runs with fill_hole_area=0."""
    model, checkpoint = weights
    _compare(_run_meta(checkpoint, clip, kind), _run_ours(model, clip, kind, 0), f"{checkpoint.stem} {kind}")


@pytest.mark.slow
def test_compact_variant_matches_meta_predictor(tmp_path: Path, clip: Path) -> None:
    """Our compact SAM 2.1 (the default model's network) is Meta's code from its config plus
    overrides, so Meta's predictor runs the same weights and the Tracker matches it."""
    model = build_sam21("compact", IMAGE_SIZE, seed=9)
    save_weights(model, tmp_path / "compact.pt")
    meta = _run_meta(tmp_path / "compact.pt", clip, "box", variant="compact")
    _compare(meta, _run_ours(model, clip, "box", 0), "compact seed9 box")


def _float_order_spread(run: Callable[[], list[np.ndarray]], reference: list[np.ndarray]) -> float:
    """A pipeline against itself: the largest logit difference between `reference` (its run at the
    current thread count) and `run()` at another (two, or one if that is not one), which sums the
    same float32 products in another order. A trained memory loop amplifies such differences frame
    by frame (see `test_trained_default_matches_meta_predictor`), so the larger of the two
    pipelines' spreads is the floor their agreement with each other can be judged against."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2 if threads == 1 else 1)
    try:
        other = run()
    finally:
        torch.set_num_threads(threads)
    return max(float(np.abs(a - b).max()) for a, b in zip(reference, other))


@pytest.mark.slow
@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="the trained default weights are not in this checkout")
def test_trained_default_matches_meta_predictor(tmp_path: Path, clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped default's SAM 2 part in Meta's predictor: trained logits span several units.

    Both pipelines store memories in bfloat16; float32 differences of ~1e-6 in what each computes
    flip a few memory values by one bfloat16 step, and a trained memory loop carries such
    differences into later frames' logits. So the whole clip is compared with float32 memories on
    both sides (`torch.bfloat16` is float32 for that run: Meta's predictor and our
    MemoryEncoderStage both look it up when they store a memory), its logits within 1e-4 of the
    clip's largest |logit| (the random-weight tests' bound) or within the larger float-order spread
    of the two pipelines (`_float_order_spread`), whichever is larger, and its masks within the
    fixed IoU bounds. As shipped, with bfloat16 memories, the first half of the clip is held to 1e-3
    (the export parity bound of issue 17) and the IoU bounds.

    Measured here (2026-12-02). Tenth- to twelfth-session defaults: float32 memories 4.5e-6, and the
    whole clip within 1e-3 with bfloat16 memories. The fifteenth-session default (run W2, memory
    path retrained) amplifies float order itself. Float32 memories: ours vs Meta 0.47 (5.0e-3 of
    94.1) at one thread, Meta at one vs two threads 0.96, ours 0.31, all from 2.5e-5 on frame 0;
    masks IoU mean 0.99962, min 0.99826. Bfloat16 memories: frames 0-11 within 7.7e-3 (8e-5);
    later frames 0.12 to 29 at one thread (IoU min 0.9937), 0.054 at two threads, where ours at one
    vs two threads also differs by 29 and Meta by 0.47: which bfloat16 step flips where depends on
    summation order, not on a difference in what the pipelines compute.

    The nineteenth-session default (run Y; its SAM 2 part is run X's, image encoder retrained), float32
    memories (2026-12-03): ours vs Meta 0.030 (3.0e-4 of 101.7) at one thread, 0.014 at two; Meta at
    one vs two threads 0.010, ours 0.055; from 0 on frame 0 and about 1e-4 on frame 1; masks IoU 1.0
    on every frame. Meta's spread alone no longer covers the pairing: ours is the larger here."""
    from mqc_edge.benchmarks.meta_predictor import meta_checkpoint
    from mqc_edge.model.checkpoint import load_checkpoint

    model, _ = load_checkpoint(DEFAULT_WEIGHTS)
    size = model.config.image_size
    checkpoint = meta_checkpoint(DEFAULT_WEIGHTS, tmp_path / "default.pt")
    with monkeypatch.context() as patch:
        patch.setattr(torch, "bfloat16", torch.float32)
        def run_meta() -> list[np.ndarray]:
            return _run_meta(checkpoint, clip, "box", "compact", size)

        def our_logits() -> list[np.ndarray]:
            return [result.logits for result in _run_ours(model.sam, clip, "box", 0)]

        meta = run_meta()
        ours = _run_ours(model.sam, clip, "box", 0)
        meta_spread = _float_order_spread(run_meta, meta)
        our_spread = _float_order_spread(our_logits, [result.logits for result in ours])
    spread = max(meta_spread, our_spread)
    print(f"\none vs two threads, float32 memories: max|dlogit| Meta {meta_spread:.2e}, ours {our_spread:.2e}")
    _compare(meta, ours, "trained default box, float32 memories", relative=True,
             bound=max(MAX_ABS_LOGIT, spread / _logit_scale(meta)))
    meta = _run_meta(checkpoint, clip, "box", "compact", size)
    _compare(meta, _run_ours(model.sam, clip, "box", 0), "trained default box, bfloat16 memories, first half",
             relative=True, bound=BFLOAT16_MEMORY_LOGIT, frames=NUM_FRAMES // 2)


@pytest.mark.slow
def test_mask_prompt_matches_meta_predictor(tmp_path: Path, clip: Path) -> None:
    model = build_sam21("tiny", IMAGE_SIZE, seed=0)
    save_weights(model, tmp_path / "w.pt")
    _compare(_run_meta(tmp_path / "w.pt", clip, "mask"), _run_ours(model, clip, "mask", 0), "seed0 mask")


@pytest.mark.slow
def test_hole_filling_matches_meta_with_cpu_components(
    tmp_path: Path, clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a CPU connected-components function in place of `sam2._C`, Meta fills holes of
    <= 8 px; ours (OpenCV components) must give the same logits frame by frame."""
    monkeypatch.setattr(sam2_misc, "get_connected_components", connected_components_bfs)
    model = build_sam21("tiny", IMAGE_SIZE, seed=0)
    save_weights(model, tmp_path / "w.pt")
    ours = _run_ours(model, clip, "box", 8)
    _compare(_run_meta(tmp_path / "w.pt", clip, "box"), ours, "seed0 box, holes filled")


def test_preprocess_equals_meta_frame_loading(clip: Path) -> None:
    images, height, width = load_video_frames(
        str(clip), IMAGE_SIZE, offload_video_to_cpu=True, compute_device=torch.device("cpu")
    )
    assert (height, width) == (FRAME_H, FRAME_W)
    for t, frame in enumerate(_frames(clip)[:3]):
        np.testing.assert_array_equal(preprocess_frame(frame, IMAGE_SIZE)[0], images[t].numpy())


def test_upsample_equals_torch_interpolate() -> None:
    """Bit for bit, so that -1024 no-object scores (ulp 6e-5) cannot break the 1e-4 budget."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 0.3, size=(64, 64)).astype(np.float32)
    logits[:20, :20] = -1024.0  # SAM 2's no-object score must survive interpolation exactly
    reference = torch.nn.functional.interpolate(
        torch.from_numpy(logits)[None, None], size=(FRAME_H, FRAME_W), mode="bilinear", align_corners=False
    )[0, 0].numpy()
    np.testing.assert_array_equal(upsample_logits(logits, FRAME_H, FRAME_W), reference)


def test_fill_holes_equals_meta_with_cpu_components(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sam2_misc, "get_connected_components", connected_components_bfs)
    rng = np.random.default_rng(1)
    logits = rng.normal(0.5, 0.3, size=(64, 64)).astype(np.float32)
    logits[rng.random((64, 64)) < 0.04] = -0.2  # scattered 1-4 px holes
    logits[10:14, 10:14] = -0.3  # a 16 px hole: too big to fill
    logits[:, 40:] = -0.5  # a large background region
    reference = fill_holes_in_mask_scores(torch.from_numpy(logits)[None, None], 8)[0, 0].numpy()
    ours = fill_holes(logits, 8)
    assert (reference != logits).sum() > 10, "the case must contain holes that Meta fills"
    np.testing.assert_array_equal(ours, reference)


def test_mask_prompt_resize_equals_meta() -> None:
    """add_new_mask: antialiased bilinear to S, then >= 0.5."""
    geometry = ModelGeometry(image_size=IMAGE_SIZE)
    for t in range(3):
        mask = _object_mask(5 * t) | (np.random.default_rng(t).random((FRAME_H, FRAME_W)) < 0.05)
        reference = torch.nn.functional.interpolate(
            torch.from_numpy(mask)[None, None].float(), size=(IMAGE_SIZE, IMAGE_SIZE),
            mode="bilinear", align_corners=False, antialias=True,
        ) >= 0.5
        ours = mask_prompt_input(mask, (FRAME_H, FRAME_W), geometry)[0, 0]
        np.testing.assert_array_equal(ours, reference[0, 0].numpy())
