"""scripts/gpu_check.sh without a GPU: it parses, refuses a missing or unsafe wheel folder in one
line, its plan fits the 8-minute budget, and without a carried export the bench runs on one the
export step makes there without the text encoder. The GPU run itself happens on the GPU machine."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def _run(*args: str, wheels: Path, **environ: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "GPU_WHEELS": str(wheels), "HOME": str(wheels.parent), **environ}
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
    assert list(limits) == ["install", "gpu_tests", "triton_timing", "tiny_export", "tiny_bench", "export", "bench"]
    assert sum(map(int, limits.values())) <= 8 * 60 - 30  # leaves time for the summary and start-up
    bench = re.search(r"^step bench\s+\d+ s\s+(.*)$", done.stdout, re.M).group(1)
    assert "--device cuda --backends torch --frame-step --vs-sam2 --modes sam2 mqc" in bench
    assert "--objects 1 4 16" in bench and "--vs-sam2-compiled" not in bench
    tiny = re.search(r"^step tiny_bench\s+\d+ s\s+(.*)$", done.stdout, re.M).group(1)
    assert "--frame-step" in tiny and "--precision fp16 --clip-size 1024" in tiny and "--objects 1 16" in tiny
    # torch.compile's minutes are opt-in, their own step and limit
    compiled = _run("--plan", wheels=tmp_path, GPU_CHECK_COMPILED="1").stdout
    assert "--vs-sam2-compiled" in re.search(r"^step bench_compiled\s+\d+ s\s*(.*)$", compiled, re.M).group(1)


def test_without_a_carried_export_the_bench_runs_on_one_made_there_without_the_text_encoder(tmp_path):
    (tmp_path / "rf_sam_2-1.0.3-py3-none-any.whl").write_bytes(b"")
    plan = _run("--plan", wheels=tmp_path, MQC_EDGE_CACHE=str(tmp_path / "cache")).stdout  # holds no default export
    export = re.search(r"^step export\s+\d+ s\s+(.*)$", plan, re.M).group(1)
    assert export == "mqc-edge export --checkpoint default --out .gpu_cache/default_no_text --no-text-encoder"
    assert re.search(r"^step bench\s+\d+ s\s+mqc-edge bench \.gpu_cache/default_no_text ", plan, re.M)


def test_a_carried_export_skips_the_export_step(tmp_path):
    (tmp_path / "rf_sam_2-1.0.3-py3-none-any.whl").write_bytes(b"")
    plan = _run("--plan", wheels=tmp_path, GPU_CHECK_MODEL="/data/model").stdout
    assert "(skipped: GPU_CHECK_MODEL names a carried export)" in plan
    assert re.search(r"^step bench\s+\d+ s\s+mqc-edge bench /data/model ", plan, re.M)
