"""scripts/gpu_train.sh without a GPU: it parses, refuses a missing states file in one line, plans
the recipe, and on the CPU (GPU_TRAIN_DEVICE=cpu) trains, ships and splits weights that join back
to the run's own, in fp16. The GPU run itself happens on the GPU machine."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_train.sh"


def _run(*args: str, tmp_path: Path, **environ: str) -> subprocess.CompletedProcess:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path), "GPU_CHECK_PYTHON": sys.executable,
           "GPU_WHEELS": str(tmp_path / "wheels"), "GPU_TRAIN_RUN": str(tmp_path / "run"), "OUT": str(tmp_path / "out"),
           **environ}
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)


def test_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0


def test_a_missing_states_file_is_one_line_error(tmp_path):
    done = _run("--plan", tmp_path=tmp_path, GPU_TRAIN_STATES=str(tmp_path / "absent.safetensors"))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "absent.safetensors is missing" in done.stderr


def test_plan_trains_batched_on_cuda_with_the_recipe(tmp_path):
    states = tmp_path / "states.safetensors"
    states.write_bytes(b"")
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "rf_sam_2-1.0.3-py3-none-any.whl").write_bytes(b"")
    done = _run("--plan", tmp_path=tmp_path, GPU_TRAIN_STATES=str(states))
    assert done.returncode == 0, done.stderr
    train = next(line for line in done.stdout.splitlines() if line.startswith("train"))
    for option in ("--device cuda", "--batch-clips 32", "--loader-workers 12", "--time-limit 6.5",
                   f"--text-states {states}", "--memory-read-weight 1"):
        assert option in train, option
    assert "--memory-mask-gain" not in train  # the shipped weights carry the memory starts already


@pytest.mark.slow
def test_on_the_cpu_it_trains_and_its_parts_join_to_the_runs_weights(tmp_path):
    from mqc_edge.model.default_config import DEFAULT_MODEL_CONFIG
    from mqc_edge.model.text_encoder import TextEncoder
    from mqc_edge.training.ship import join_checkpoints
    from mqc_edge.training.text_states import synthetic_expressions, write_text_states

    states = tmp_path / "states.safetensors"
    write_text_states(TextEncoder(max_tokens=DEFAULT_MODEL_CONFIG.max_text_tokens), synthetic_expressions(), states)
    done = _run(tmp_path=tmp_path, GPU_TRAIN_STATES=str(states), GPU_TRAIN_DEVICE="cpu", GPU_TRAIN_BATCH="2",
                GPU_TRAIN_WORKERS="0", GPU_TRAIN_MINUTES="0.01", GPU_TRAIN_STEPS="10",
                GPU_TRAIN_INIT=str(ROOT / "mqc_edge/model/weights/mqc_sam_default.safetensors"))
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit"] == 0 and summary["steps"] >= 1 and summary["objects"] >= 2
    parts = sorted(out.glob("shipped.part*.safetensors"))
    assert len(parts) == 2 and all(part.stat().st_size <= 15 * 2**20 for part in parts)
    joined = join_checkpoints(parts, tmp_path / "joined.safetensors")
    from safetensors.torch import load_file

    mine, run = load_file(joined), load_file(tmp_path / "run" / "model.safetensors")
    assert set(mine) == set(run)
    for name, value in run.items():  # the run's weights, rounded to fp16 once
        torch.testing.assert_close(mine[name].float(), value.half().float(), rtol=0, atol=0)
