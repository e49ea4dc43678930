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
    limits = {name: int(s) for name, s in re.findall(r"^step (\w+)\s+(\d+) s", done.stdout, re.M)}
    background = {name: int(s) for name, s in re.findall(r"^background (\w+)\s+(\d+) s", done.stdout, re.M)}
    assert list(limits) == ["install", "gpu_tests", "triton_timing", "tiny_bench_1024", "tiny_bench_480", "bench"]
    assert list(background) == ["tiny_export_1024", "tiny_export_480", "export"]
    # the exports run beside the tests; the benches wait for them
    worst = limits["install"] + max(limits["gpu_tests"] + limits["triton_timing"], *background.values()) \
        + limits["tiny_bench_1024"] + limits["tiny_bench_480"] + limits["bench"]
    assert worst <= 8 * 60 - 30  # leaves time for the summary and start-up
    bench = re.search(r"^step bench\s+\d+ s\s+(.*)$", done.stdout, re.M).group(1)
    assert "--device cuda --backends torch --frame-step --vs-sam2 --modes sam2 mqc" in bench
    assert "--objects 1 4 16" in bench and "--vs-sam2-compiled" not in bench
    for size in (1024, 480):
        tiny = re.search(rf"^step tiny_bench_{size}\s+\d+ s\s+(.*)$", done.stdout, re.M).group(1)
        assert tiny.startswith(f"mqc-edge bench .gpu_cache/tiny{size} ") and tiny.endswith(f"--clip-size {size}")
        assert "--frame-step" in tiny and "--precision fp16" in tiny and "--objects 1 4 16" in tiny
    # torch.compile's minutes are opt-in, their own step and limit
    compiled = _run("--plan", wheels=tmp_path, GPU_CHECK_COMPILED="1").stdout
    assert "--vs-sam2-compiled" in re.search(r"^step bench_compiled\s+\d+ s\s*(.*)$", compiled, re.M).group(1)


FAKE_PYTHON = """#!/usr/bin/env bash
# stands in for the GPU machine's python: every step succeeds quickly; an export writes a manifest
echo "$@" >> "$CALLS"
case "$*" in
  *"mqc_edge.cli export"*) out=$(echo "$*" | sed -E 's/.*--out ([^ ]+).*/\\1/'); sleep 1; mkdir -p "$out"; echo '{}' > "$out/manifest.json";;
  *"mqc_edge.cli bench --help"*) echo "  --device DEVICE";;
  *"triton_segmented_attention"*) echo '{}';;
  *"import torch"*) echo 2.11.0;;
  "- "*) exec python3 "$@";;  # the summary: real Python
esac
exit 0
"""


def test_a_run_with_a_stand_in_python_joins_the_background_exports_before_the_benches(tmp_path):
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "rf_sam_2-1.0.3-py3-none-any.whl").write_bytes(b"")
    python = tmp_path / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    calls, out, work = tmp_path / "calls.txt", tmp_path / "out", tmp_path / "tree"
    (work / "scripts").mkdir(parents=True)  # the script runs from its checkout's root: a copy, so .gpu_cache lands here
    script = work / "scripts" / "gpu_check.sh"
    script.write_text(SCRIPT.read_text())
    env = {"PATH": "/usr/bin:/bin", "GPU_WHEELS": str(tmp_path / "wheels"), "HOME": str(tmp_path),
           "GPU_CHECK_PYTHON": str(python), "CALLS": str(calls), "OUT": str(out), "MQC_EDGE_CACHE": str(work)}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    steps = [row["step"] for row in __import__("json").loads((out / "summary.json").read_text())["steps"]]
    assert steps == ["install", "gpu_tests", "triton_timing", "tiny_export_1024", "tiny_bench_1024", "tiny_export_480",
                     "tiny_bench_480", "export", "bench"], (done.stdout, done.stderr)
    made = calls.read_text().splitlines()
    benches = [i for i, line in enumerate(made) if "mqc_edge.cli bench .gpu_cache" in line]
    exports = [i for i, line in enumerate(made) if "mqc_edge.cli export" in line]
    assert len(benches) == 3 and len(exports) == 3 and max(exports) < min(benches)
    assert "== tiny_export_1024 (in the background)" in (out / "gpu_check.log").read_text()


def test_without_a_carried_export_the_bench_runs_on_one_made_there_without_the_text_encoder(tmp_path):
    (tmp_path / "rf_sam_2-1.0.3-py3-none-any.whl").write_bytes(b"")
    plan = _run("--plan", wheels=tmp_path, MQC_EDGE_CACHE=str(tmp_path / "cache")).stdout  # holds no default export
    export = re.search(r"^background export\s+\d+ s\s+(.*)$", plan, re.M).group(1)
    assert export == "mqc-edge export --checkpoint default --out .gpu_cache/default_no_text --no-text-encoder"
    assert re.search(r"^step bench\s+\d+ s\s+mqc-edge bench \.gpu_cache/default_no_text ", plan, re.M)


def test_a_carried_export_skips_the_export_step(tmp_path):
    (tmp_path / "rf_sam_2-1.0.3-py3-none-any.whl").write_bytes(b"")
    plan = _run("--plan", wheels=tmp_path, GPU_CHECK_MODEL="/data/model").stdout
    assert "(skipped: GPU_CHECK_MODEL names a carried export)" in plan
    assert re.search(r"^step bench\s+\d+ s\s+mqc-edge bench /data/model ", plan, re.M)
