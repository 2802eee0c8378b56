"""The light-curve model of each variability class, with its priors."""

from __future__ import annotations

import numpy as np

from stellar.data.simulate.lightcurve._physics import (
    _band_scale,
    _fourier,
    _lam,
    _sawtooth,
    _unit_ptp,
    eclipsing_binary_flux,
)


class _ClassModels:
    """One method per variability class, ``_sim_<class>(time, band, rng) -> (Δmag, labels)``: the model's
    magnitudes (n, T) about the mean and its label columns (n,). Mixed into
    :class:`~stellar.data.simulate.lightcurve.LightCurveSimulator`, whose ``bands`` and ``exposure_d`` they read
    and whose ``simulate`` calls them by the class's name."""

    bands: tuple[str, ...]

    @property
    def exposure_d(self) -> float:
        """Integration time of one cadence, d (the simulator's)."""
        raise NotImplementedError

    def _eclipsing(
        self, time: np.ndarray, band: np.ndarray, rng: np.random.Generator, kind: str
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        n = int(time.shape[0])
        if kind == "detached":
            period = np.exp(rng.uniform(np.log(1.0), np.log(30.0), n))
            r1 = rng.uniform(0.02, 0.15, n)
            r2 = r1 * rng.uniform(0.2, 1.0, n)
            j = rng.uniform(0.05, 1.0, n)
            q = rng.uniform(0.3, 1.0, n)
        elif kind == "semidetached":
            period = np.exp(rng.uniform(np.log(0.7), np.log(10.0), n))
            q = rng.uniform(0.1, 0.5, n)
            r2 = 0.49 * q ** (2 / 3) / (0.6 * q ** (2 / 3) + np.log1p(q ** (1 / 3)))  # Eggleton Roche lobe
            r1 = rng.uniform(0.15, 0.35, n)
            j = rng.uniform(0.02, 0.3, n)
        else:
            period = np.exp(rng.uniform(np.log(0.22), np.log(0.8), n))
            q = rng.uniform(0.1, 1.0, n)
            r1 = rng.uniform(0.38, 0.5, n)
            r2 = r1 * q**0.46
            j = rng.uniform(0.8, 1.0, n)
        impact = rng.uniform(0.0, 0.9, n) * (r1 + r2)  # eclipsing by construction
        inc = np.degrees(np.arccos(np.clip(impact, 0, 1)))
        u = rng.uniform(0.3, 0.7, n)
        t0 = np.nanmin(np.where(time > 0, time, np.nan), axis=1) + rng.uniform(0, 1, n) * period
        lam = _lam(self.bands)
        j_band = j[:, None] ** (lam[0] / lam[band])  # Wien-like: the cooler star fades towards the blue
        phase = np.mod((time - t0[:, None]) / period[:, None], 1.0)
        args = (r1[:, None], r2[:, None], inc[:, None], j_band, u[:, None], q[:, None])
        flux = eclipsing_binary_flux(phase, *args)
        grid = np.array([[0.0, 0.25, 0.5]])  # extremes: conjunctions (eclipses, ellipsoidal minima), quadrature
        ref = eclipsing_binary_flux(grid, *args[:3], j[:, None], u[:, None], q[:, None])  # first band: J itself
        amplitude = 2.5 * np.log10(ref.max(axis=1) / ref.min(axis=1))
        labels = {"period": period, "amplitude": amplitude, "t0": t0, "radius_ratio": r2 / r1, "r1": r1, "r2": r2}
        labels |= {"inclination": inc, "sb_ratio": j, "mass_ratio": q, "limb_darkening": u}
        return -2.5 * np.log10(flux), labels

    def _sim_eclipsing_detached(self, t: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple:
        return self._eclipsing(t, b, rng, "detached")

    def _sim_eclipsing_semidetached(self, t: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple:
        return self._eclipsing(t, b, rng, "semidetached")

    def _sim_eclipsing_contact(self, t: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple:
        return self._eclipsing(t, b, rng, "contact")

    def _pulsator(
        self,
        time: np.ndarray,
        band: np.ndarray,
        rng: np.random.Generator,
        period: np.ndarray,
        amplitude: np.ndarray,
        amp: np.ndarray,
        ph: np.ndarray,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        n = int(time.shape[0])
        t0 = rng.uniform(0, 1, n) * period
        k = np.arange(1, amp.shape[1] + 1)
        smear = np.sinc(k[None, :] * self.exposure_d / period[:, None])  # integration over one exposure
        phase = (time - t0[:, None]) / period[:, None]
        delta = _fourier(phase, amplitude[:, None] * amp * smear, ph) * _band_scale(self.bands)[band]
        return delta, {"period": period, "amplitude": amplitude, "t0": t0}

    def _sim_rr_lyrae_ab(self, t: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple:
        n = int(t.shape[0])
        period = np.clip(np.exp(rng.normal(np.log(0.57), 0.1, n)), 0.42, 0.85)
        lp = np.log10(period)
        a_v = -2.627 - 22.046 * lp - 30.876 * lp**2  # Bailey relation, Oosterhoff I (Cacciari+2005)
        amplitude = np.clip(a_v + rng.normal(0, 0.12, n), 0.3, 1.4) * _band_scale(("V", self.bands[0]))[1]
        amp, ph = _sawtooth(rng, n, rng.uniform(0.42, 0.55, n))
        return self._pulsator(t, b, rng, period, amplitude, amp, ph)

    def _sim_rr_lyrae_c(self, t: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple:
        n = int(t.shape[0])
        period = rng.uniform(0.23, 0.43, n)
        amplitude = rng.uniform(0.25, 0.6, n) * _band_scale(("V", self.bands[0]))[1]
        amp = np.stack([np.ones(n), rng.uniform(0.05, 0.2, n), rng.uniform(0.0, 0.08, n)], axis=1)
        ph = rng.uniform(0, 2 * np.pi, (n, 3)) * np.array([0.0, 1.0, 1.0])
        return self._pulsator(t, b, rng, period, amplitude, _unit_ptp(amp, ph), ph)

    def _sim_cepheid(self, t: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple:
        n = int(t.shape[0])
        lp = rng.uniform(np.log10(2.0), np.log10(60.0), n)
        period = 10.0**lp
        amplitude = np.clip(0.35 + 0.5 * lp + rng.normal(0, 0.12, n), 0.15, 1.4) * _band_scale(("V", self.bands[0]))[1]
        ratio = 0.45 - 0.3 * np.exp(-(((lp - 1.0) / 0.08) ** 2))  # Hertzsprung progression: R21 dips near 10 d
        amp, ph = _sawtooth(rng, n, np.clip(ratio + rng.normal(0, 0.03, n), 0.1, 0.6), k=6)
        return self._pulsator(t, b, rng, period, amplitude, amp, ph)

    def _sim_delta_scuti(self, t: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple:
        n = int(t.shape[0])
        lo = max(0.03, 4 * self.exposure_d)  # keep the dominant mode well below the Nyquist frequency
        period = np.exp(rng.uniform(np.log(lo), np.log(0.25), n))
        amplitude = np.exp(rng.uniform(np.log(0.01), np.log(0.3), n))
        n_modes = rng.integers(1, 5, n)
        ratios = np.stack([np.full(n, 0.773), rng.uniform(0.6, 1.4, n), rng.uniform(0.6, 1.4, n)], axis=1)
        rel = rng.uniform(0.1, 0.6, (n, 3)) * (np.arange(1, 4)[None, :] < n_modes[:, None])
        t0 = rng.uniform(0, 1, n) * period
        scale = _band_scale(self.bands)[b]
        delta = 0.5 * np.cos(2 * np.pi * (t - t0[:, None]) / period[:, None])
        delta *= np.sinc(self.exposure_d / period)[:, None]
        for m in range(3):
            p = period * ratios[:, m]
            delta += (
                0.5
                * (rel[:, m] * np.sinc(self.exposure_d / p))[:, None]
                * np.cos(2 * np.pi * t / p[:, None] + rng.uniform(0, 2 * np.pi, n)[:, None])
            )
        return amplitude[:, None] * delta * scale, {"period": period, "amplitude": amplitude, "t0": t0,
                                                    "n_modes": n_modes.astype(float)}  # fmt: skip

    def _sim_rotational(self, t: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple:
        n = int(t.shape[0])
        period = np.exp(rng.uniform(np.log(0.5), np.log(30.0), n))
        amplitude = np.exp(rng.uniform(np.log(0.002), np.log(0.08), n))
        tau = period * rng.uniform(5.0, 20.0, n)  # spot lifetime
        t0 = rng.uniform(0, 1, n) * period
        scale = _band_scale(self.bands)[b]
        delta = np.zeros(t.shape)
        for spot, shear in enumerate((np.zeros(n), rng.uniform(-0.01, 0.01, n))):
            p = period * (1 + shear)
            w = 1.0 if spot == 0 else 0.5
            grow = 1.0 + 0.5 * np.sin(2 * np.pi * t / tau[:, None] + rng.uniform(0, 2 * np.pi, n)[:, None])
            phase = (t - t0[:, None]) / p[:, None] + (0.0 if spot == 0 else rng.uniform(0, 1, n)[:, None])
            h2 = rng.uniform(0.1, 0.3, n)[:, None]
            delta += w * grow * (np.cos(2 * np.pi * phase) + h2 * np.cos(4 * np.pi * phase + 1.0))
        delta *= 0.5 * amplitude[:, None] / 1.5
        return delta * scale, {"period": period, "amplitude": amplitude, "t0": t0, "spot_evolution": tau}

    def _sim_lpv(self, t: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple:
        n = int(t.shape[0])
        period = np.exp(rng.uniform(np.log(80.0), np.log(600.0), n))
        amplitude = np.exp(rng.uniform(np.log(0.1), np.log(3.0), n))
        t0 = rng.uniform(0, 1, n) * period
        # cycle-to-cycle phase wander: a slow random walk sampled on a coarse grid, interpolated
        tmin = np.where(t > 0, t, np.inf).min(axis=1)
        cyc = (t - tmin[:, None]) / period[:, None]
        knots = np.cumsum(rng.normal(0, 0.03, (n, 64)), axis=1)
        wander = np.take_along_axis(knots, np.clip(cyc.astype(int), 0, 63), axis=1)
        phase = (t - t0[:, None]) / period[:, None] + wander
        h2 = rng.uniform(0.0, 0.25, n)[:, None]
        shape = np.cos(2 * np.pi * phase) + h2 * np.cos(4 * np.pi * phase + 0.8)
        ptp = np.ptp(np.cos(2 * np.pi * np.linspace(0, 1, 256)) + h2 * np.cos(4 * np.pi * np.linspace(0, 1, 256) + 0.8),
                     axis=1)  # fmt: skip
        delta = amplitude[:, None] * shape / ptp[:, None] * _band_scale(self.bands)[b]
        return delta, {"period": period, "amplitude": amplitude, "t0": t0}

    def _sim_flare(self, t: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple:
        n, m = t.shape
        rate = np.exp(rng.uniform(np.log(0.1), np.log(2.0), n))  # flares per day
        valid = t > 0
        t_lo = np.where(valid, t, np.inf).min(axis=1)
        t_hi = np.where(valid, t, -np.inf).max(axis=1)
        span = np.maximum(t_hi - t_lo, 1e-3)
        counts = rng.poisson(rate * span)
        row = np.repeat(np.arange(n), counts)
        peak = t_lo[row] + rng.uniform(0, 1, row.size) * span[row]
        amp = np.exp(rng.uniform(np.log(0.01), np.log(1.0), row.size))  # peak flux / quiescent flux
        rise = rng.uniform(1.0, 5.0, row.size) / 1440.0
        decay = rng.uniform(5.0, 60.0, row.size) / 1440.0
        # each point takes the nearest flares on either side: sort flares per row on one global axis
        offset = (np.arange(n) * (span.max() + 10 * 1.0) * 4).astype(float)
        key = peak - t_lo[row] + offset[row]
        order = np.argsort(key)
        key, amp, rise, decay, row = key[order], amp[order], rise[order], decay[order], row[order]
        tq = np.where(valid, t - t_lo[:, None], 0.0) + offset[:, None]
        flux = np.zeros((n, m))
        if key.size:
            j = np.searchsorted(key, tq)  # the next flare is j, the previous ones j-1, j-2
            for back in (1, 2, 3):
                i = np.clip(j - back, 0, key.size - 1)
                same = (j - back >= 0) & (np.abs(key[i] - tq) < span.max() + 10)
                dt = tq - key[i]
                flux += np.where(same & (dt >= 0), amp[i] * np.exp(-np.clip(dt, 0, None) / decay[i]), 0.0)
            i = np.clip(j, 0, key.size - 1)
            dt = tq - key[i]
            flux += np.where((j < key.size) & (dt < 0), amp[i] * np.exp(-0.5 * (dt / rise[i]) ** 2), 0.0)
        delta = -2.5 * np.log10(1.0 + flux * np.where(valid, 1.0, 0.0)) * _band_scale(self.bands)[b]
        max_amp = np.zeros(n)
        np.maximum.at(max_amp, row, amp)
        return delta, {"amplitude": 2.5 * np.log10(1 + max_amp), "flare_rate": rate, "n_flares": counts.astype(float)}

    def _sim_non_variable(self, t: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple:
        return np.zeros(t.shape), {"amplitude": np.zeros(t.shape[0])}
