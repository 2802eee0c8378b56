"""The continuum-shape channel: one preprocessing option that travels from the store to the encoders and the server."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from stellar.data.datamodules.spectra import SpectraDataModule
from stellar.data.preprocess.spectra import SpectrumPreprocessing, continuum_normalise, log_wavelength_grid
from stellar.data.sources.spectra import MilesSource, der_snr_noise
from stellar.errors import StellarConfigError, StellarValueError
from stellar.models.components.encoders import SpectralCNN, SpectralTransformer
from stellar.registry import ModelRegistry
from stellar.serving.api import SpectralAPI
from stellar.serving.schemas import SpectralRequest
from tests.data.test_preprocess_spectra import lines, planck


@pytest.mark.parametrize("teff", [3500.0, 6000.0, 30000.0])
def test_channel_is_the_log_of_the_fitted_continuum(teff: float) -> None:
    wave = 10.0 ** log_wavelength_grid()
    continuum = 7.0 * planck(wave, teff)
    flux = continuum * lines(wave)
    out = SpectrumPreprocessing(continuum_channel=True)(wave, flux)
    # exactly what the fit produced: ln of continuum_normalise's continuum over its median
    _, _, fitted = continuum_normalise(wave, flux)
    np.testing.assert_allclose(out["continuum"][0], np.log(fitted / np.median(fitted)), atol=2e-5)
    # and, to the fit's accuracy, the true (blackbody) shape; its slope is what tells 3500 K from 30000 K
    truth = np.log(continuum / np.median(continuum))
    np.testing.assert_allclose(out["continuum"][0], truth, atol=0.01)
    np.testing.assert_allclose(np.exp(out["continuum"]) * out["flux"], [flux / np.median(fitted)], rtol=1e-5)
    # the normalised flux itself is untouched by the option
    np.testing.assert_array_equal(out["flux"], SpectrumPreprocessing()(wave, flux)["flux"])


def test_channel_holds_the_edge_beyond_the_data_and_is_flat_on_unfitted_rows() -> None:
    grid = log_wavelength_grid()
    wave = 10.0 ** grid[500:2500]  # covers only part of the grid
    flux = np.stack([planck(wave, 4000.0), -np.ones_like(wave)])  # the second row cannot be fitted
    out = SpectrumPreprocessing(continuum_channel=True)(wave, flux)
    c, m = out["continuum"], out["mask"]
    inside = np.flatnonzero(~m[0])
    assert np.all(c[0, : inside[0]] == c[0, inside[0]]) and np.all(c[0, inside[-1] :] == c[0, inside[-1]])
    assert np.median(c[0, inside]) == pytest.approx(0.0, abs=1e-6)
    assert c[0, inside[-1]] - c[0, inside[0]] > 0.3  # 4000 K rises to the red
    assert m[1].all() and np.all(c[1] == 0.0)
    assert np.all(np.isfinite(c))


def test_option_round_trips_and_old_dicts_load_without_it() -> None:
    prep = SpectrumPreprocessing(wave_min=4000.0, wave_max=6000.0, continuum_channel=True)
    params = prep.to_dict()
    assert params["continuum_channel"] is True
    assert SpectrumPreprocessing.from_dict(params) == prep == instantiate(params)
    old = {k: v for k, v in params.items() if k != "continuum_channel"}  # a dict stored before the option
    assert SpectrumPreprocessing.from_dict(old).continuum_channel is False
    wave = 10.0 ** log_wavelength_grid(4000.0, 6000.0)
    assert set(SpectrumPreprocessing.from_dict(old)(wave, planck(wave, 5000.0))) == {"flux", "ivar", "mask"}
    with pytest.raises(StellarValueError, match="continuum_channel=True needs normalise=True"):
        SpectrumPreprocessing(normalise=False, continuum_channel=True)


@pytest.mark.parametrize("encoder_cls", [SpectralCNN, SpectralTransformer])
def test_encoders_take_the_channel(encoder_cls: type[torch.nn.Module]) -> None:
    torch.manual_seed(0)
    flux = 1.0 + 0.05 * torch.randn(3, 300)
    mask = torch.zeros(3, 300, dtype=torch.bool)
    mask[0, :40] = True
    shape = torch.linspace(-1.0, 1.0, 300).expand(3, -1).clone()
    enc = encoder_cls(out_dim=16, continuum_channel=True).eval()
    assert enc.inputs == ("flux", "mask", "continuum")
    h = enc(flux, mask, shape)
    assert h.shape == (3, 16) and torch.isfinite(h).all()
    assert not torch.allclose(h, enc(flux, mask, -shape))  # the slope reaches the features
    old = encoder_cls(out_dim=16).eval()
    assert old.inputs == ("flux", "mask") and old(flux, mask).shape == (3, 16)
    with pytest.raises(StellarConfigError, match="continuum_channel=True"):
        enc(flux, mask)
    with pytest.raises(StellarConfigError, match="continuum_channel=False"):
        old(flux, mask, shape)


def test_datamodule_and_server_give_identical_inputs(miles_dir, tmp_path) -> None:
    """The stored dataset and a request of the same spectrum go through the one preprocessing object."""
    from tests.serving.helpers import register_untrained

    dm = SpectraDataModule(MilesSource(str(miles_dir)), str(tmp_path / "store"), split=None)
    dm.setup()
    assert dm.preprocessing.continuum_channel is False  # the class default; configs switch it on
    dm = SpectraDataModule(
        MilesSource(str(miles_dir)),
        str(tmp_path / "store"),
        split=None,
        preprocessing=SpectrumPreprocessing(continuum_channel=True),
    )
    dm.setup()
    batch = next(iter(dm.test_dataloader()))
    assert batch["continuum"].shape == batch["flux"].shape
    version = register_untrained(tmp_path / "registry", "spectral_cnn", "miles", "datamodule.data_dir=unused")
    assert version.preprocessing().continuum_channel is True  # on for MILES by config, and stored with the model
    assert version.manifest["inputs"] == ["flux", "mask", "continuum"]
    api = SpectralAPI(version.name, registry_root=str(tmp_path / "registry"), api_path="/predict/spectral")
    api.setup("cpu")
    wave, flux, _ = MilesSource(str(miles_dir)).read()
    rows = [i for i in range(len(flux)) if np.all(flux[i] != 0)][:2]
    # MILES has no errors: the request carries the DER_SNR noise the source gives the stored spectra
    errors = np.broadcast_to(der_snr_noise(flux[rows].astype(np.float64))[:, None], flux[rows].shape)
    body = {"spectra": flux[rows].tolist(), "wavelengths": wave.tolist(), "errors": errors.tolist(), "medium": "air"}
    job = api.decode_request(SpectralRequest.model_validate(body))
    served = api.preprocess(job.rows)
    for key in ("flux", "ivar", "mask", "continuum"):
        np.testing.assert_allclose(served[key], batch[key][rows].numpy(), rtol=1e-5, atol=1e-5, err_msg=key)
    answer = api.predict(job)[1]
    assert len(answer) == 2 and all(sum(p["probabilities"].values()) == pytest.approx(1.0) for p in answer)


def test_models_registered_before_the_option_serve_as_before(tmp_path) -> None:
    from tests.serving.helpers import register_untrained

    old = register_untrained(tmp_path / "registry", "spectral_cnn", "spectra")
    # rewrite the version as one stored before the option: no field in the preprocessing or the encoder config
    files = {rel: old.read_bytes(rel) for rel in old.files if rel != "MODEL_CARD.md"}
    text = files["config_resolved.yaml"].decode()
    files["config_resolved.yaml"] = "\n".join(ln for ln in text.splitlines() if "continuum_channel" not in ln).encode()
    state = torch.load(io.BytesIO(files["checkpoints/epoch_000.ckpt"]), weights_only=True)
    prep = {k: v for k, v in old.manifest["preprocessing"].items() if k != "continuum_channel"}
    encoder = SpectralCNN()  # the encoder as it was: two input channels
    torch.manual_seed(0)
    state["state_dict"] = {
        **{k: v for k, v in state["state_dict"].items() if not k.startswith("encoder.")},
        **{f"encoder.{k}": v for k, v in encoder.state_dict().items()},
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    files["checkpoints/epoch_000.ckpt"] = buf.getvalue()
    manifest = {**old.manifest, "preprocessing": prep, "inputs": ["flux", "mask"]}
    v = ModelRegistry(tmp_path / "registry").register("legacy", files, manifest)
    assert v.preprocessing() == dataclasses.replace(SpectrumPreprocessing(), continuum_channel=False)
    net = v.load_model()
    assert net.inputs == ("flux", "mask")
    api = SpectralAPI("legacy", registry_root=str(tmp_path / "registry"), api_path="/predict/spectral")
    api.setup("cpu")
    grid = np.asarray(api.prep.grid)
    job = api.decode_request(SpectralRequest.model_validate({"spectra": [(1 + 0.1 * np.sin(grid * 50)).tolist()]}))
    assert "continuum" not in api.preprocess(job.rows)
    (answer,) = api.predict(job)[1]
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0)
