"""The package version, in a module of its own: the modules that stamp it into artifacts import it from here, so
importing them never runs the package's ``__init__`` (which offers :func:`stellar.load`)."""

__version__ = "0.1.0"
