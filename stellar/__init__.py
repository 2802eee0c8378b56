"""stellar: calibrated stellar classification and parameters from public survey data."""

__version__ = "0.1.0"
