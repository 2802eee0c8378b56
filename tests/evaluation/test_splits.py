import json
import logging

import numpy as np
import pandas as pd
import pytest

from stellar.errors import StellarConfigError, StellarValueError
from stellar.evaluation.splits import (
    GroupSplit,
    KFold,
    RandomSplit,
    SkySplit,
    SurveySplit,
    TimeSplit,
    audit_split,
)


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


# ---- sky, survey, time and k-fold splits ------------------------------------------------------------------------


def _sky_table(n_stars=600, repeats=3, jitter_deg=0.5, seed=0):
    """Stars spread over the whole sky, each observed ``repeats`` times with jittered positions and epochs."""
    rng = np.random.default_rng(seed)
    ra0 = rng.uniform(0, 360, n_stars)
    dec0 = np.degrees(np.arcsin(rng.uniform(-1, 1, n_stars)))
    first = rng.uniform(50000, 60000, n_stars)
    rows = []
    for s in range(n_stars):
        for r in range(repeats):
            rows.append(
                {
                    "object_id": f"star{s}",
                    "obs_id": f"star{s}-obs{r}",
                    "label": "GKM"[s % 3],
                    "survey": ("sdss", "gaia", "lamost")[s % 3],
                    "ra": (ra0[s] + rng.normal(0, jitter_deg)) % 360,
                    "dec": float(np.clip(dec0[s] + rng.normal(0, jitter_deg), -90, 90)),
                    "mjd": first[s] + 30.0 * r,
                }
            )
    return pd.DataFrame(rows)


def _obs(meta, idx):
    return set(meta["obs_id"].to_numpy()[idx])


def _assert_same_parts(split, meta):
    shuffled = meta.sample(frac=1.0, random_state=11).reset_index(drop=True)
    a, b = split(meta), split(shuffled)
    for pa, pb in zip(a.parts().values(), b.parts().values(), strict=True):
        assert _obs(meta, pa) == _obs(shuffled, pb)
    return a


NEW_SPLITS = {
    "sky": lambda seed: SkySplit(nside=8, seed=seed),
    "survey": lambda seed: SurveySplit(train_surveys=["sdss", "gaia"], test_surveys=["lamost"], seed=seed),
    "time": lambda seed: TimeSplit(seed=seed),
    "group_kfold": lambda seed: KFold(GroupSplit(seed=seed), n_folds=5, fold=1),
    "sky_kfold": lambda seed: KFold(SkySplit(nside=8, seed=seed), n_folds=4, fold=3),
    "random_kfold": lambda seed: KFold(RandomSplit(seed=seed), n_folds=5, fold=0),
}


@pytest.fixture(scope="module")
def sky_meta():
    return _sky_table()


@pytest.mark.parametrize("name", NEW_SPLITS)
def test_new_splits_are_order_independent_and_reproducible(sky_meta, name):
    res = _assert_same_parts(NEW_SPLITS[name](3), sky_meta)
    again = NEW_SPLITS[name](3)(sky_meta)
    for a, b in zip(res.parts().values(), again.parts().values(), strict=True):
        np.testing.assert_array_equal(a, b)
    if name != "time":  # the time split only uses the seed to break ties
        other = NEW_SPLITS[name](4)(sky_meta)
        assert set(other.val.tolist()) != set(res.val.tolist())
    json.dumps(res.audit)  # the audit is saved as JSON


def test_jittered_repeats_leak_under_random_never_under_group_or_sky(sky_meta):
    leaky = RandomSplit(seed=0)(sky_meta)
    assert leaky.audit["overlap"]["object_id"]["train&test"] > 0
    sky = SkySplit(nside=8, seed=0)
    # the jitter really moves some stars across a block border: the merge is exercised
    per_star = pd.Series(sky.blocks(sky_meta)).groupby(sky_meta["object_id"]).nunique()
    assert (per_star > 1).sum() > 5
    for split in (GroupSplit(seed=0), sky, SkySplit(nside=32, seed=1)):
        res = split(sky_meta)
        assert set(res.audit["overlap"]["object_id"].values()) == {0}
        parts = [_objects(sky_meta, p) for p in res.parts().values()]
        assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    res = sky(sky_meta)
    assert res.audit["overlap"]["sky_block"] == {"train&val": 0, "train&test": 0, "val&test": 0}
    assert res.audit["n_blocks_merged"] > 0
    blocks = sky.blocks(sky_meta)
    assert not set(blocks[res.train]) & set(blocks[res.test])


def test_audit_reports_extra_groups():
    meta = _repeated_table(n_stars=10, repeats=1)
    parts = {"train": np.arange(5), "val": np.array([], dtype=int), "test": np.arange(5, 10)}
    audit = audit_split(meta, parts, extra_groups={"block": np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])})
    assert audit["overlap"]["block"] == {"train&val": 0, "train&test": 1, "val&test": 0}
    with pytest.raises(StellarValueError, match="one value per row"):
        audit_split(meta, parts, extra_groups={"block": np.arange(3)})


def test_sky_split_fractions_with_many_blocks():
    meta = _sky_table(n_stars=3000, repeats=1, jitter_deg=0.0, seed=1)
    res = SkySplit(nside=16, seed=0)(meta)
    assert res.audit["n_blocks"] > 1000
    for part, frac in zip(res.parts().values(), (0.7, 0.15, 0.15), strict=True):
        assert abs(len(part) / len(meta) - frac) < 0.03


def test_sky_split_rejects_nan_positions_and_bad_nside():
    meta = _sky_table(n_stars=20, repeats=1)
    meta.loc[[2, 5, 7], "dec"] = np.nan
    with pytest.raises(StellarValueError, match="3 of 20 rows have NaN"):
        SkySplit(nside=8)(meta)
    with pytest.raises(StellarValueError, match="power of 2"):
        SkySplit(nside=12)
    with pytest.raises(StellarValueError, match="needs column 'ra_deg'"):
        SkySplit(nside=8, ra_col="ra_deg")(meta)


def test_survey_split_domain_shift(sky_meta):
    res = SurveySplit(train_surveys=["sdss", "gaia"], test_surveys=["lamost"], val_fraction=0.2, seed=0)(sky_meta)
    survey = sky_meta["survey"].to_numpy()
    assert set(survey[res.test]) == {"lamost"}
    assert np.sum(survey == "lamost") == len(res.test)
    assert set(survey[np.concatenate([res.train, res.val])]) == {"sdss", "gaia"}
    assert abs(len(res.val) / (len(res.train) + len(res.val)) - 0.2) < 0.03
    assert set(res.audit["overlap"]["object_id"].values()) == {0}
    assert res.audit["surveys"]["test"] == ["lamost"]
    # surveys in neither list go to no part
    res = SurveySplit(train_surveys=["sdss"], test_surveys=["lamost"])(sky_meta)
    assert res.audit["unused_rows"] == np.sum(survey == "gaia")


def test_survey_split_drops_train_rows_of_stars_seen_by_a_test_survey():
    meta = _repeated_table(n_stars=30, repeats=2)
    meta["survey"] = np.where(meta["obs_id"].str.endswith("obs0"), "sdss", "gaia")
    meta.loc[meta["object_id"].isin(["star0", "star1"]) & (meta["survey"] == "gaia"), "survey"] = "lamost"
    res = SurveySplit(train_surveys=["sdss", "gaia"], test_surveys=["lamost"])(meta)
    assert res.audit["dropped_rows"] == 2 and len(res.test) == 2
    assert set(res.audit["overlap"]["object_id"].values()) == {0}
    kept = SurveySplit(train_surveys=["sdss", "gaia"], test_surveys=["lamost"], drop_shared_groups=False)(meta)
    assert kept.audit["overlap"]["object_id"]["train&test"] + kept.audit["overlap"]["object_id"]["val&test"] == 2


def test_survey_split_bad_names(sky_meta):
    with pytest.raises(StellarValueError, match=r"\['ztf'\].*the table has \['gaia', 'lamost', 'sdss'\]"):
        SurveySplit(train_surveys=["sdss"], test_surveys=["ztf"])(sky_meta)
    with pytest.raises(StellarValueError, match=r"\['sdss'\] are in both"):
        SurveySplit(train_surveys=["sdss", "gaia"], test_surveys=["sdss"])
    with pytest.raises(StellarValueError, match="non-empty list"):
        SurveySplit(train_surveys=[], test_surveys=["gaia"])
    with pytest.raises(StellarValueError, match="val_fraction"):
        SurveySplit(train_surveys=["sdss"], test_surveys=["gaia"], val_fraction=1.0)


def test_time_split_trains_on_earlier_epochs(sky_meta):
    # one row per star: every train time precedes every val time precedes every test time
    single = sky_meta.drop_duplicates("object_id").reset_index(drop=True)
    res = TimeSplit(seed=0)(single)
    t = single["mjd"].to_numpy()
    assert t[res.train].max() <= t[res.val].min() and t[res.val].max() <= t[res.test].min()
    assert abs(len(res.train) / len(single) - 0.7) < 0.03
    # repeated epochs: groups stay whole and are ordered by their first epoch
    res = TimeSplit(seed=0)(sky_meta)
    assert set(res.audit["overlap"]["object_id"].values()) == {0}
    first = sky_meta.groupby("object_id")["mjd"].min()
    f_train = first[list(_objects(sky_meta, res.train))]
    f_test = first[list(_objects(sky_meta, res.test))]
    assert f_train.max() <= f_test.min()
    rng = res.audit["time_range"]
    assert rng["train"][0] == sky_meta["mjd"].min() and rng["test"][1] == sky_meta["mjd"].max()
    assert res.audit["first_seen_range"]["train"][1] <= res.audit["first_seen_range"]["test"][0]


def test_time_split_ties_are_broken_by_seed_not_order():
    meta = _repeated_table(n_stars=100, repeats=2)
    meta["mjd"] = 55000.0 + (meta.index % 2)  # every star first seen at the same time
    a = _assert_same_parts(TimeSplit(seed=0), meta)
    b = TimeSplit(seed=1)(meta)
    assert set(a.test.tolist()) != set(b.test.tolist())
    meta.loc[3, "mjd"] = np.nan
    with pytest.raises(StellarValueError, match="1 of 200 rows have NaN"):
        TimeSplit()(meta)


@pytest.mark.parametrize(
    "base", [GroupSplit(seed=2), SkySplit(nside=8, seed=2), RandomSplit(seed=2)], ids=["group", "sky", "random"]
)
def test_kfold_test_folds_partition_rows_and_never_share_a_group(sky_meta, base):
    k = 5
    results = KFold(base, n_folds=k).folds(sky_meta)
    assert [r.audit["fold"] for r in results] == list(range(k))
    tests = np.concatenate([r.test for r in results])
    np.testing.assert_array_equal(np.sort(tests), np.arange(len(sky_meta)))
    for i, r in enumerate(results):
        np.testing.assert_array_equal(np.sort(np.concatenate(list(r.parts().values()))), np.arange(len(sky_meta)))
        np.testing.assert_array_equal(r.val, results[(i + 1) % k].test)  # the next fold is val
        assert abs(len(r.test) / len(sky_meta) - 1 / k) < 0.03
        if not isinstance(base, RandomSplit):
            assert set(r.audit["overlap"]["object_id"].values()) == {0}
    if isinstance(base, SkySplit):
        assert set(results[0].audit["overlap"]["sky_block"].values()) == {0}
    if not isinstance(base, RandomSplit):
        groups = [_objects(sky_meta, r.test) for r in results]
        assert all(not (groups[i] & groups[j]) for i in range(k) for j in range(i + 1, k))


def test_kfold_bad_arguments():
    with pytest.raises(StellarConfigError, match="base='time'"):
        KFold(TimeSplit(), n_folds=5)
    with pytest.raises(StellarConfigError, match="base='survey'"):
        KFold(SurveySplit(train_surveys=["a"], test_surveys=["b"]), n_folds=5)
    with pytest.raises(StellarValueError, match="n_folds"):
        KFold(GroupSplit(), n_folds=2)
    with pytest.raises(StellarValueError, match=r"fold must be an integer in \[0, 5\)"):
        KFold(GroupSplit(), n_folds=5, fold=5)
