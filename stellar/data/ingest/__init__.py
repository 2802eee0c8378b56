"""Survey connectors into the dataset store, all through one fetch policy.

- :mod:`~stellar.data.ingest.policy` — :class:`Request`, :class:`FetchPolicy`, :class:`Fetcher` (retries with
  backoff and jitter, ``Retry-After``, per-survey concurrency, offline), validated bodies only
- :mod:`~stellar.data.ingest.cache` — the raw cache (content-addressed, keyed by query)
- :mod:`~stellar.data.ingest.validate` — what a complete FITS / VOTable / CSV / JSON answer is
- :mod:`~stellar.data.ingest.manifest` — done/failed targets, append-only, for resuming
- :mod:`~stellar.data.ingest.runner` — the loop every connector shares (:func:`ingest`, :func:`ingest_files`)
- connectors: :mod:`~stellar.data.ingest.sdss`, :mod:`~stellar.data.ingest.gaia`,
  :mod:`~stellar.data.ingest.lightcurves` (Kepler, K2, TESS), :mod:`~stellar.data.ingest.simbad`
- :mod:`~stellar.data.ingest.formats` — files a user already has (``input_dir=``)
- :mod:`~stellar.data.ingest.records` — parsed objects and how they become datasets
- :mod:`~stellar.data.ingest.replay` — a local replay server with fault injection (tests, benchmarks)

``python -m stellar.ingest`` builds these from ``conf/ingest.yaml`` in :func:`stellar.pipelines.ingest.run`.
"""
