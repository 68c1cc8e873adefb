"""The INC peer's rows as named before its subprocess runs (bench/peers/inc.py)."""

from __future__ import annotations

from bench.peers import inc


def test_the_planned_rows_name_each_sparsity_and_auto_slim_unless_its_sparsity_is_zero():
    both = [r["method"] for r in inc.planned_rows((0.5, 0.8), "why", ffn_sparsity=0.75)]
    assert both == [
        "peer: INC snip_momentum 4x1 50%",
        "peer: INC snip_momentum 4x1 80%",
        "peer: INC auto_slim FFN + model_slim",
    ]
    alone = inc.planned_rows((0.5,), "why", ffn_sparsity=0)
    assert [r["method"] for r in alone] == ["peer: INC snip_momentum 4x1 50%"]
    assert alone[0]["skipped"] == "why"
