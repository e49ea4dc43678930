# The two Quickstart commands. Each creates .venv in the checkout when missing and installs
# what it needs (scripts/bootstrap.sh; a stamp skips the install when nothing changed).
.PHONY: demo test gpu-check gpu-train

demo:
	bash scripts/bootstrap.sh
	.venv/bin/mqc-edge demo

test:
	bash scripts/bootstrap.sh
	.venv/bin/python -m pytest -q

# On a GPU machine, with .gpu_wheels carried (scripts/fetch_gpu_wheels.sh fills it here):
# GPU tests, the Triton kernel against torch and the CUDA bench; summaries in $OUT.
gpu-check:
	bash scripts/gpu_check.sh

# On a GPU machine, with .gpu_wheels and .gpu_train carried (scripts/gpu_train.sh says how to fill
# them): the default model trained in one call, its weights back in $OUT in parts.
gpu-train:
	bash scripts/gpu_train.sh
