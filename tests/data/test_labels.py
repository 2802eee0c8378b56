import numpy as np
import pandas as pd

from stellar.data.labels import MK_CLASSES, mk_index, mk_letter_from_sptype, mk_letter_from_teff


def test_teff_to_letter_edges():
    teff = [45000, 31500, 31499, 10000, 9999, 7300, 5950, 5772, 5300, 3900, 3899, 2500]
    assert "".join(MK_CLASSES[i] for i in mk_letter_from_teff(teff)) == "OOBBAAFGGKMM"


def test_teff_to_letter_known_stars():
    # Sun G2V 5772 K, Vega A0V 9600 K, Betelgeuse M1-2 ~3600 K, Sirius A1V 9940 K, Procyon F5IV 6530 K
    names = {5772: "G", 9600: "A", 3600: "M", 9940: "A", 6530: "F", 4600: "K", 20000: "B", 38000: "O"}
    got = {t: MK_CLASSES[i] for t, i in zip(names, mk_letter_from_teff(list(names)), strict=True)}
    assert got == names


def test_sptype_parsing_on_real_miles_types(miles_dir):
    params = pd.read_csv(miles_dir / "miles_params.csv")
    letters = [mk_letter_from_sptype(s) for s in params["sptype"].fillna("")]
    known = [s for s, letter in zip(params["sptype"].fillna(""), letters, strict=True) if letter]
    assert len(known) >= 0.8 * len(params)
    assert mk_letter_from_sptype("sd:F") == "F"
    assert mk_letter_from_sptype("M6 V") == "M"
    assert mk_letter_from_sptype("III") is None
    assert mk_letter_from_sptype("G:?") == "G"
    np.testing.assert_array_equal(mk_index(["O", "M", None, "X", ""]), [0, 6, -1, -1, -1])
