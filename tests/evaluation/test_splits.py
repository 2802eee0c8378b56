import logging

import numpy as np
import pandas as pd
import pytest

from stellar.errors import StellarValueError
from stellar.evaluation.splits import GroupSplit, RandomSplit


def _repeated_table(n_stars=200, repeats=3, seed=0):
    """Each star observed ``repeats`` times: the leakage case."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_stars):
        cls = "GKM"[s % 3]
        for r in range(repeats):
            rows.append({"object_id": f"star{s}", "obs_id": f"star{s}-obs{r}", "label": cls, "x": rng.normal()})
    return pd.DataFrame(rows)


def _objects(meta, idx):
    return set(meta["object_id"].to_numpy()[idx])


def test_random_split_leaks_repeated_stars_and_audit_sees_it():
    meta = _repeated_table()
    res = RandomSplit(seed=1)(meta)
    assert res.audit["overlap"]["object_id"]["train&test"] > 0
    assert _objects(meta, res.train) & _objects(meta, res.test)


def test_group_split_never_leaks():
    meta = _repeated_table()
    for seed in range(5):
        res = GroupSplit(seed=seed)(meta)
        assert all(v == 0 for v in res.audit["overlap"]["object_id"].values())
        parts = [_objects(meta, p) for p in (res.train, res.val, res.test)]
        assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])


@pytest.mark.parametrize("split", [RandomSplit(seed=3), GroupSplit(seed=3)])
def test_split_is_complete_sized_and_order_independent(split):
    meta = _repeated_table()
    res = split(meta)
    allrows = np.sort(np.concatenate([res.train, res.val, res.test]))
    np.testing.assert_array_equal(allrows, np.arange(len(meta)))
    assert abs(len(res.train) / len(meta) - 0.7) < 0.03
    assert abs(len(res.test) / len(meta) - 0.15) < 0.03
    shuffled = meta.sample(frac=1.0, random_state=9).reset_index(drop=True)
    res2 = split(shuffled)
    for a, b in zip(res.parts().values(), res2.parts().values(), strict=True):
        assert set(meta["obs_id"].to_numpy()[a]) == set(shuffled["obs_id"].to_numpy()[b])


def test_seed_changes_assignment_and_class_counts_are_audited():
    meta = _repeated_table()
    a, b = GroupSplit(seed=0)(meta), GroupSplit(seed=1)(meta)
    assert set(a.test.tolist()) != set(b.test.tolist())
    counts = a.audit["class_counts"]
    assert sum(sum(c.values()) for c in counts.values()) == len(meta)
    assert a.audit["seed"] == 0


def test_absent_class_warns(caplog):
    meta = _repeated_table(n_stars=60)
    meta.loc[meta.object_id == "star0", "label"] = "O"  # one star of a rare class: absent from two parts
    with caplog.at_level(logging.WARNING):
        res = GroupSplit(seed=0)(meta)
    assert any("absent" in r.message for r in caplog.records)
    assert sum("O" in v for v in res.audit["absent_classes"].values()) == 2


def test_bad_arguments():
    meta = _repeated_table(n_stars=5)
    with pytest.raises(StellarValueError, match="fractions"):
        GroupSplit(fractions=(0.5, 0.2, 0.2))
    with pytest.raises(StellarValueError, match="group split needs column 'survey_id'"):
        GroupSplit(group_key="survey_id")(meta)
    with pytest.raises(StellarValueError, match="unique"):
        RandomSplit(row_key="object_id")(meta)
    with pytest.raises(StellarValueError, match="empty"):
        GroupSplit()(meta.iloc[:0])
