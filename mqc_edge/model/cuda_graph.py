"""A SAM 2 mode tracking frame as one CUDA graph (DESIGN section 4: static shapes make it capturable).

What is captured, in this order, for a fixed number of objects K:
    image_encoder(image) -> memory_attention(feat, memory slots, slot mask, temporal ids, pointers)
    -> mask_decoder(feat_conditioned, fpn0, fpn1, sparse_prompt, dense_prompt, multimask)
    -> memory_encoder(feat, mask_lowres, object_score, binarize)
Every input a stage does not get from an earlier stage of the step is a static tensor in `inputs`
(its contract spec with objects = K and the tracking frame's 2 prompt tokens): the image, the
memory bank `[K, 7, 64, h, w]` and pointer bank with their masks and ids, the tracking prompts
and the two flags. Every stage output lands in a static tensor of `outputs`, keyed by its contract
name (`memory` there is the new memory, `[K, 64, h, w]`). Not captured: host decisions between
stages (which slot a frame goes to, hole filling of the logits, a non-finite object left out of
the memory encoder), so the graph equals the eager Tracker step with `fill_hole_area=0` when the
caller writes the new memory into its slot afterwards (`write_slot` on `inputs["memory"]`, on the
device). A replay overwrites `outputs`: copy what must outlive the next frame.

With `capture=False` nothing is captured: `replay` runs the same stage calls eagerly on the same
static inputs and copies their results into the same static outputs. That is the glue of a
captured step on any device (the Tracker's captured path is tested that way on CPU), with no
speed gain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from mqc_edge.contract import stage_specs
from mqc_edge.runtime.backends.stage_backend import FRAME_STEP_STAGES, check_frame_step_input, frame_step_inputs

if TYPE_CHECKING:
    from mqc_edge.model.torch_backend import TorchExecutor

WARMUP_CALLS = 3
"""Eager calls on a side stream before capture (CUDA's recipe: lazy init, cuDNN autotuning, caches)."""


class FrameStepGraph:
    """`FRAME_STEP_STAGES` for K objects captured once on the executor's CUDA device; `replay` runs it."""

    def __init__(self, executor: TorchExecutor, objects: int = 1, capture: bool = True) -> None:
        self.executor = executor
        specs = stage_specs(executor.geometry)
        self.specs = [specs[name] for name in FRAME_STEP_STAGES]
        self.input_specs = frame_step_inputs(executor.geometry, objects)
        self.inputs: dict[str, torch.Tensor] = {name: executor.zeros(spec) for name, spec in self.input_specs.items()}
        """Static inputs, keyed by contract name: write into them (copy_, write_slot) between replays."""
        self.graph = torch.cuda.CUDAGraph() if capture else None
        self.outputs = self._capture() if capture else self._run()
        """Static outputs of the last replay, keyed by contract name."""

    def _run(self) -> dict[str, torch.Tensor]:
        """The step's stage calls on the static inputs; each stage reads earlier stages' outputs first."""
        outputs: dict[str, torch.Tensor] = {}
        for spec in self.specs:
            arguments = {t.name: outputs[t.name] if t.name in outputs else self.inputs[t.name] for t in spec.inputs}
            outputs.update(zip((t.name for t in spec.outputs), self.executor.run_stage(spec, arguments)))
        return outputs

    def _capture(self) -> dict[str, torch.Tensor]:
        side = torch.cuda.Stream(self.executor.device)
        side.wait_stream(torch.cuda.current_stream(self.executor.device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_CALLS):
                self._run()
        torch.cuda.current_stream(self.executor.device).wait_stream(side)
        with torch.cuda.graph(self.graph):
            return self._run()

    def replay(self, inputs: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Copy `inputs` (contract name -> tensor of the static input's shape and dtype, else
        StageContractError naming it) into the static inputs, replay the graph (asynchronously:
        nothing waits for it) and return `outputs`."""
        for name, value in (inputs or {}).items():
            check_frame_step_input(self.input_specs[name], *self.executor.describe(value))
            self.inputs[name].copy_(value)
        if self.graph is not None:
            self.graph.replay()
        else:
            with torch.inference_mode():  # the static outputs were made there (run_stage)
                for name, value in self._run().items():
                    self.outputs[name].copy_(value)
        return self.outputs
