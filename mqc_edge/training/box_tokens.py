"""An auxiliary loss on the text start: the fusion's sparse prompt tokens should say where the box is.

Why (docs/model_card.md, "Text starts in the decoder's box language"): from its frame-0 box the
shipped decoder segments the target at J&F 0.69 on validation; from the expression, through the
prompt fusion, at 0.29, and on 41 validation objects only 12 % of the text starts found their
object (IoU >= 0.5), 17 % found another object and 10 % found nothing. The decoder already reads
two sparse tokens well: SAM's box prompt is two corner tokens (the prompt encoder's positional
encoding of each corner plus its learned corner embedding). The fusion emits two sparse tokens
too (`PromptFusion.num_sparse_tokens`), so it can learn to write the target's box in the
decoder's own prompt language. This loss asks it to: the squared distance of the fused tokens to
the frozen prompt encoder's corner tokens of the target's frame-0 box, relative to the box tokens' mean
square (so its scale does not depend on the prompt encoder's):

    loss = mean((sparse_text - sparse_box)^2) / mean(sparse_box^2)    per object

The mask loss stays the main term; this one only points the fusion at a solution the decoder
already knows. The box is the ground truth's bounding box, known for every training object
(`ClipObject.box`); inference never needs it.
"""

from __future__ import annotations

import torch
from torch import Tensor


def box_token_loss(text_sparse: Tensor, box_sparse: Tensor) -> Tensor:
    """Fused sparse tokens `[N, K, C]` against the box prompt's `[N, K + P, C]` -> `[N]`.

    The box prompt's first K tokens are its corners; the P after them are the padding points the
    runtime's prompt adds (label -1: the same learned constant for every box), not compared.
    Raises ValueError when the box has fewer tokens or another width."""
    count = text_sparse.shape[1]
    if box_sparse.shape[0] != text_sparse.shape[0] or box_sparse.shape[1] < count or box_sparse.shape[2] != text_sparse.shape[2]:
        raise ValueError(f"box-token loss: fused tokens {list(text_sparse.shape)} against box tokens "
                         f"{list(box_sparse.shape)}; expected the box's first {count} tokens to match them")
    target = box_sparse[:, :count].detach()
    scale = target.pow(2).flatten(1).mean(1).clamp(min=1e-8)
    return (text_sparse - target).pow(2).flatten(1).mean(1) / scale
