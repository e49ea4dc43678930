"""Stage modules are bound to the contract by name: `forward`'s parameters are the stage's inputs.

The torch backend and the exporter pass inputs by position, in contract order, and several
inputs share dtype and shape (`fifo_age` and `ptr_fifo_age`), so a swapped parameter would pass
every shape check; this test names it.
"""

from __future__ import annotations

import inspect

import pytest

from mqc_edge.contract import ModelGeometry, MQCGeometry, stage_specs
from mqc_edge.model.mqc_stages import MQC_STAGES
from mqc_edge.model.stages import SAM2_STAGES


@pytest.mark.parametrize("moga", [False, True])  # MoGA adds dami_attention's last input, gate_obj_ptr
@pytest.mark.parametrize("uncertainty", [False, True])  # the CroBIM-U head adds the uncertainty_head stage
def test_forward_parameters_are_the_stage_inputs_in_contract_order(moga: bool, uncertainty: bool) -> None:
    specs = stage_specs(ModelGeometry(image_size=128, mqc=MQCGeometry(moga=moga, uncertainty=uncertainty)))
    modules = {name: module for name, module in {**SAM2_STAGES, **MQC_STAGES}.items() if name in specs}
    assert sorted(modules) == sorted(specs)
    for stage, module in modules.items():
        parameters = list(inspect.signature(module.forward).parameters.values())[1:]  # after self
        inputs = [spec.name for spec in specs[stage].inputs]
        assert [p.name for p in parameters[: len(inputs)]] == inputs, stage
        assert all(p.default is not p.empty for p in parameters[len(inputs):]), f"{stage}: an input the contract lacks"


def test_every_optional_stage_has_a_module() -> None:
    everything = MQCGeometry(moga=True, uncertainty=True)
    assert set(stage_specs(ModelGeometry(image_size=128, mqc=everything))) == {*SAM2_STAGES, *MQC_STAGES}
