"""scripts/gpu_check.sh without a GPU: it parses, refuses a missing or unsafe wheel folder in one
line, and its plan fits the 8-minute budget. The GPU run itself happens on the GPU machine."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def _run(*args: str, wheels: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "GPU_WHEELS": str(wheels), "HOME": str(wheels.parent)}
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("name", ["gpu_check.sh", "fetch_gpu_wheels.sh"])
def test_scripts_parse(name):
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / name)]).returncode == 0


def test_missing_wheel_folder_is_one_line_error(tmp_path):
    done = _run("--plan", wheels=tmp_path / "absent")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("gpu_check: error: wheel folder")


def test_a_torch_wheel_is_refused(tmp_path):
    (tmp_path / "torch-2.11.0-cp312-cp312-manylinux_2_28_x86_64.whl").write_bytes(b"")
    done = _run("--plan", wheels=tmp_path)
    assert done.returncode == 2 and "torch must not be installed" in done.stderr


def test_plan_lists_the_steps_within_eight_minutes(tmp_path):
    (tmp_path / "rf_sam_2-1.0.3-py3-none-any.whl").write_bytes(b"")
    done = _run("--plan", wheels=tmp_path)
    assert done.returncode == 0, done.stderr
    limits = dict(re.findall(r"^step (\w+)\s+(\d+) s", done.stdout, re.M))
    assert set(limits) == {"install", "gpu_tests", "triton_timing", "bench"}
    assert sum(map(int, limits.values())) <= 8 * 60 - 30  # leaves time for the summary and start-up
    assert "--device cuda --modes sam2 mqc --clip-size 480 --frames 24" in done.stdout
