"""How the engine deals a pass's units to its slots (jobs.engine.deal), and what a slot then
holds with the jackknife."""

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from jobs.engine import SlotAccumulator, deal, slot_units
from jobs.stitching import StitchPairs
from jobs.tasks import MomentTask
from repalign.measures.jackknife import group_bounds
from repalign.store import write_representation


@given(count=st.integers(0, 60), slots=st.integers(1, 12), runs=st.booleans())
def test_every_unit_goes_to_one_slot_and_the_slots_get_near_equal_shares(count, slots, runs):
    units = [(start, start + 10) for start in range(0, 10 * count, 10)]
    dealt = deal(units, slots, runs=runs)
    assert len(dealt) == max(1, min(slots, count))
    assert sorted(unit for share in dealt for unit in share) == units
    lengths = [len(share) for share in dealt]
    assert max(lengths) - min(lengths) <= 1
    if runs:
        assert [unit for share in dealt for unit in share] == units  # contiguous, in order
    else:
        assert all(share == units[s :: len(dealt)] for s, share in enumerate(dealt))


def test_the_moments_pass_is_dealt_in_runs_and_stitching_pairs_in_turn():
    units = list(range(6))
    moments = MomentTask("store", ["a.x"], None)
    stitching = StitchPairs("store", [("a.x", "b.y")] * 6, {})
    assert slot_units(moments, units, 2) == [[0, 1, 2], [3, 4, 5]]
    assert slot_units(stitching, units, 2) == [[0, 2, 4], [1, 3, 5]]


def test_with_the_jackknife_a_slot_holds_the_states_of_its_own_groups_only(tmp_path):
    """2,000 rows in 20 units, 16 groups, 2 slots: each slot adds the rows of its run into at
    most ⌈16/2⌉ + 1 group states (a group may straddle the two runs), and the two slots cover
    every group between them."""
    rng = np.random.default_rng(0)
    for name in ("a.x", "b.y"):
        values = rng.standard_normal((2000, 6)).astype(np.float32)
        write_representation(tmp_path / "store", name, np.arange(2000), values)
    groups = 16
    task = MomentTask(tmp_path / "store", ["a.x", "b.y"], None, groups=group_bounds(2000, groups))
    units = [(start, start + 100) for start in range(0, 2000, 100)]
    held = []
    for run in slot_units(task, units, 2):
        slot = SlotAccumulator(task, run)
        for unit in run:
            slot.add(unit)
        held.append(set(slot.state.states))
    assert all(len(states) <= math.ceil(groups / 2) + 1 for states in held)
    assert set.union(*held) == set(range(groups))
