"""Meta's predictor contestant: one timing and one memory sample per tracked frame."""

import numpy as np
import torch
from PIL import Image

from mqc_edge.benchmarks.meta_predictor import build_meta_predictor, run_meta_predictor
from mqc_edge.model.sam2_build import build_sam21, save_weights


def test_meta_predictor_records_every_tracked_frame(tmp_path):
    torch.set_num_threads(1)
    checkpoint = tmp_path / "tiny.pt"
    save_weights(build_sam21("tiny", image_size=128, seed=0), checkpoint)
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for index in range(4):
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(frames / f"{index:05d}.jpg")
    run = run_meta_predictor(build_meta_predictor(checkpoint, "tiny", 128), frames, [[10, 10, 60, 50], [70, 40, 120, 90]])
    assert len(run.frame_ms) == 3 and all(ms > 0 for ms in run.frame_ms)
    assert run.first_mask_ms > 0 and len(run.resident_bytes) == 3
