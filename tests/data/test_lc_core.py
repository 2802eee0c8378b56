"""The light-curve core that lightcurve, period and lightcurve_inputs share: row coercion (``_lc_rows``) and the
one peak finder (``_periodogram.top_peaks``), against known answers."""

from __future__ import annotations

import numpy as np
import pytest

from stellar.data.preprocess._lc_rows import rows
from stellar.data.preprocess._periodogram import top_peaks
from stellar.errors import StellarValueError

#: Maxima at 0 (4, an end), 2 (3), 4 (1), 6 (5), 8 (2, an end); a plateau of two equal points at 10-11.
P = np.array([4.0, 0, 3, 0, 1, 0, 5, 0, 2, 0, 2.5, 2.5, 0, 1.5])


def test_top_peaks_known_answers() -> None:
    assert top_peaks(P, 3).tolist() == [6, 0, 2]
    inner = top_peaks(P, 4, ends=False).tolist()  # no ends; both points of the plateau count (in either order)
    assert inner[:2] == [6, 2] and sorted(inner[2:]) == [10, 11]
    assert top_peaks(P, 20, within=0.7).tolist() == [6, 0]  # at least 0.7 × 5
    every = top_peaks(P, 20).tolist()
    assert every[:3] == [6, 0, 2] and sorted(every[3:5]) == [10, 11] and every[5:] == [8, 13, 4]
    # a stretch: its maxima only, judged against neighbours outside it too
    assert top_peaks(P, 5, lo=1, hi=6).tolist() == [2, 4]
    assert top_peaks(P, 5, lo=5, hi=6).tolist() == [5]  # no maximum in it: its highest point
    # a monotonic row has no interior maximum: the highest point of the whole row
    assert top_peaks(np.arange(6.0), 3, ends=False).tolist() == [5]
    assert top_peaks(np.arange(6.0)[::-1], 3).tolist() == [0]


def test_top_peaks_nan_and_its_neighbours_are_no_peaks() -> None:
    p = np.array([0.0, 2.0, np.nan, 3.0, 1.0, 4.0, 0.0, 3.5, 0.0])
    assert top_peaks(p, 5).tolist() == [5, 7]  # 1 and 3 stand next to the NaN
    assert top_peaks(p, 5, within=0.9).tolist() == [5]  # 0.9 × nanmax = 3.6


def test_top_peaks_is_what_the_period_search_and_the_coarse_search_use() -> None:
    """The windowed search of the alias sidelobes (period._local_peaks) is top_peaks on the stretch."""
    from stellar.data.preprocess import period as ps

    rng = np.random.default_rng(0)
    p = rng.random(200)
    for j, win in ((1, 3), (100, 7), (198, 40), (50, 1)):
        got = ps._local_peaks(p, j, win, 3)
        lo, hi = max(j - win, 1), min(j + win + 1, p.size - 1)
        inner = [i for i in range(lo, hi) if p[i] >= p[i - 1] and p[i] >= p[i + 1]]
        assert got == (sorted(inner, key=lambda i: -p[i])[:3] or [lo + int(np.argmax(p[lo:hi]))])


def test_rows_names_the_argument_and_keeps_arrays() -> None:
    x = np.arange(6.0).reshape(2, 3)
    assert rows(x, "flux") is x  # already rows of the wanted dtype: not copied
    one = rows([1, 2, 3], "flux", float)
    assert one.shape == (1, 3) and one.dtype == np.float64
    assert rows(np.array([True, False]), "mask").dtype == bool
    assert rows(np.zeros((2, 0)), "flux").shape == (2, 0)  # empty rows allowed unless said otherwise
    with pytest.raises(StellarValueError, match=r"band must be 1-D \(T,\) or 2-D \(N, T\) with T > 0"):
        rows(np.zeros((2, 0)), "band", np.int64, allow_empty=False)
    with pytest.raises(StellarValueError, match=r"flux_err must .* got shape \(2, 2, 2\)"):
        rows(np.zeros((2, 2, 2)), "flux_err")
    with pytest.raises(StellarValueError, match="time must"):
        rows(np.float64(3.0), "time")
