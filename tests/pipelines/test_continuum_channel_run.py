"""A short MILES run through ``run(cfg)`` with the continuum-shape channel on (the MILES default) and off."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from stellar.pipelines.train import run
from tests.pipelines.conftest import MILES


@pytest.mark.parametrize("channel", [True, False])
def test_miles_run_with_and_without_the_continuum_channel(make_cfg, channel):
    overrides = [] if channel else ["datamodule.preprocessing.continuum_channel=false"]
    cfg = make_cfg("experiment=miles_spectra", "model=spectral_multitask", MILES, "debug=limit", *overrides, tiny=False)
    assert cfg.datamodule.preprocessing.continuum_channel is channel  # on by default for flux-calibrated MILES
    metrics, objs = run(cfg)
    model, dm = objs["model"], objs["datamodule"]
    expected = ("flux", "mask", "continuum") if channel else ("flux", "mask")
    assert model.inputs == expected
    assert model.encoder.features[0].in_channels == len(expected)
    assert ("continuum" in dm.part("train").tensors) is channel
    assert metrics["test_summary"]["regression"]["teff"]["median_ae"] > 0
    resolved = OmegaConf.load(f"{cfg.paths.output_dir}/config_resolved.yaml")
    assert resolved.model.encoder.continuum_channel is channel  # what the registry rebuilds the model from
