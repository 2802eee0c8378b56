"""One exception family for every user-facing error in stellar."""


class StellarError(Exception):
    """Base class of every error stellar raises on purpose."""


class StellarValueError(StellarError, ValueError):
    """An argument has a value (or shape, or unit) that is not allowed."""


class StellarDataError(StellarError):
    """Stored or source data is missing, malformed or inconsistent."""


class StellarConfigError(StellarError):
    """A configuration combination is invalid."""


class CorruptPayloadError(StellarDataError):
    """A downloaded (or cached) body that fails validation: a bad FITS, a short read, an unparsable table."""


class PreemptedError(StellarError):
    """A training job was stopped (``SIGTERM``, a scheduler's pre-emption) after saving where it was; run it again
    in the same run folder with ``resume=auto`` to continue."""
