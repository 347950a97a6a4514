"""How the engine deals a pass's units to its slots (jobs.engine.deal), and what a slot then
holds with the jackknife."""

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from jobs.engine import SlotAccumulator, deal
from jobs.tasks import MomentTask
from repalign.measures.jackknife import group_bounds
from repalign.store import write_representation


@given(count=st.integers(0, 60), slots=st.integers(1, 12))
def test_units_are_dealt_in_contiguous_runs_of_near_equal_length(count, slots):
    units = [(start, start + 10) for start in range(0, 10 * count, 10)]
    dealt = deal(units, slots)
    assert len(dealt) == max(1, min(slots, count))
    assert [unit for run in dealt for unit in run] == units  # in order, each once
    lengths = [len(run) for run in dealt]
    assert max(lengths) - min(lengths) <= 1


def test_with_the_jackknife_a_slot_holds_the_states_of_its_own_groups_only(tmp_path):
    """2,000 rows in 20 units, 16 groups, 2 slots: each slot adds the rows of its stretch into
    at most ⌈16/2⌉ + 1 group states (a group may straddle the two stretches), and the two
    slots cover every group between them."""
    rng = np.random.default_rng(0)
    for name in ("a.x", "b.y"):
        values = rng.standard_normal((2000, 6)).astype(np.float32)
        write_representation(tmp_path / "store", name, np.arange(2000), values)
    groups = 16
    task = MomentTask(tmp_path / "store", ["a.x", "b.y"], None, groups=group_bounds(2000, groups))
    units = [(start, start + 100) for start in range(0, 2000, 100)]
    held = []
    for run in deal(units, 2):
        slot = SlotAccumulator(task, run)
        for unit in run:
            slot.add(unit)
        held.append(set(slot.state.states))
    assert all(len(states) <= math.ceil(groups / 2) + 1 for states in held)
    assert set.union(*held) == set(range(groups))
