"""Referring expressions written from frame 0 only, the causal protocol of CroBIM-V's RS-RVOS Bench.

An expression is category + the fewest attributes that single the target out among the
same-category objects visible on frame 0 + the cell of a 3x3 grid holding the frame-0 mask
centroid ("the parked wide-bodied aircraft at the top-left"). Nothing later than frame 0 is
read: motion words come from the object's own state at that instant (a ship's wake, a taxiing
aircraft), never from where it goes.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from mqc_edge.data.dataset import Expression
from mqc_edge.data.synth.spec import TargetSpec

ROW_WORDS = ("top", "", "bottom")
COLUMN_WORDS = ("left", "", "right")
STATIONARY_WORDS = {"aircraft": "parked", "ship": "anchored", "car": "parked", "train": "stationary"}
LARGE_WORDS = {"aircraft": "wide-bodied", "ship": "large", "car": "large", "train": "long"}
SMALL_WORDS = {"aircraft": "small", "ship": "small", "car": "small", "train": "short"}
SIZE_RATIO = 1.4  # length ratio above which people say "large"/"small" without hesitation (a chosen value)
ATTRIBUTES = ("motion", "size", "color")  # also the order the words take in the phrase


def grid_cell(centroid_xy: tuple[float, float], width: int, height: int) -> tuple[int, int]:
    """(row, column) in 0..2 of a point given with pixel centres on integers."""
    column = min(int(3 * (centroid_xy[0] + 0.5) / width), 2)
    row = min(int(3 * (centroid_xy[1] + 0.5) / height), 2)
    return row, column


def location_phrase(row: int, column: int) -> str:
    if (row, column) == (1, 1):
        return "in the center"
    if row == 1:
        return f"on the {COLUMN_WORDS[column]}"
    return "at the " + "-".join(word for word in (ROW_WORDS[row], COLUMN_WORDS[column]) if word)


def _size_word(target: TargetSpec, others: list[TargetSpec]) -> str | None:
    if not others:
        return None
    if all(target.length >= SIZE_RATIO * other.length for other in others):
        return LARGE_WORDS[target.category]
    if all(other.length >= SIZE_RATIO * target.length for other in others):
        return SMALL_WORDS[target.category]
    return None


def _attributes(target: TargetSpec, cell: tuple[int, int], peers: list[TargetSpec]) -> dict[str, str | None]:
    return {
        "cell": location_phrase(*cell),
        "motion": "moving" if target.moving else STATIONARY_WORDS[target.category],
        "size": _size_word(target, peers),
        "color": target.color,
    }


def phrase(category: str, words: dict[str, str | None], chosen: tuple[str, ...]) -> str:
    """The phrase: 'the', the chosen attributes' words (in ATTRIBUTES order), the category, the cell phrase."""
    adjectives = [words[name] for name in ATTRIBUTES if name in chosen]
    return " ".join(["the", *adjectives, category, words["cell"]])  # type: ignore[list-item]


def make_expressions(ids_frame0: np.ndarray, targets: tuple[TargetSpec, ...], rng: np.random.Generator) -> list[Expression]:
    """One expression per non-distractor target visible on frame 0 that words can single out.

    `rng` only decides whether an already unique phrase gets one extra attribute, for variety.
    """
    height, width = ids_frame0.shape
    visible: dict[int, tuple[TargetSpec, tuple[int, int]]] = {}
    for obj_id, target in enumerate(targets, start=1):
        rows, columns = np.nonzero(ids_frame0 == obj_id)
        if rows.size:
            visible[obj_id] = (target, grid_cell((columns.mean(), rows.mean()), width, height))
    described = {
        obj_id: _attributes(
            target, cell, [other for other_id, (other, _) in visible.items() if other_id != obj_id and other.category == target.category]
        )
        for obj_id, (target, cell) in visible.items()
    }
    expressions = []
    for obj_id, (target, _) in visible.items():
        if target.is_distractor:
            continue
        text = _unique_phrase(obj_id, target.category, described, visible, rng)
        if text is not None:
            expressions.append(
                Expression(exp_id=str(len(expressions)), text=text, obj_id=obj_id, category=target.category)
            )
    return expressions


def _unique_phrase(obj_id: int, category: str, described: dict[int, dict[str, str | None]],
                   visible: dict[int, tuple[TargetSpec, tuple[int, int]]], rng: np.random.Generator) -> str | None:
    """The phrase with the fewest attributes that no other visible same-category object also fits."""
    words = described[obj_id]
    peers = [described[other] for other, (target, _) in visible.items() if other != obj_id and target.category == category]
    usable = [name for name in ATTRIBUTES if words[name] is not None]
    for count in range(len(usable) + 1):
        for chosen in combinations(usable, count):
            keys = ("cell", *chosen)
            if all(any(peer[key] != words[key] for key in keys) for peer in peers):
                if count == 0 and rng.random() < 0.5:
                    chosen = (usable[int(rng.integers(len(usable)))],)
                return phrase(category, words, chosen)
    return None
