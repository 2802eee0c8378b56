"""datamodule.streaming=true over a dataset store on the local S3: every training row once per epoch, read chunk by
chunk from S3, and the same test batches as the in-memory datamodule on the same store."""

from __future__ import annotations

import numpy as np

from stellar.data.datamodules import SpectraDataModule
from stellar.data.simulate.spectra import SpectrumSimulator
from stellar.data.sources import SimulatedSpectraSource
from stellar.evaluation.splits import RandomSplit


def test_streaming_from_an_s3_store(s3_bucket):
    source = SimulatedSpectraSource(n=60, seed=5, simulator=SpectrumSimulator())
    store = f"{s3_bucket}/store"
    mem = SpectraDataModule(source, store, split=RandomSplit(seed=0), batch_size=8)
    mem.store.write(mem.dataset_name, **mem.build_kwargs(), chunk_rows=16)
    stream = SpectraDataModule(source, store, split=RandomSplit(seed=0), batch_size=8, streaming=True, shuffle_buffer=8)
    mem.setup("fit")
    stream.setup("fit")
    assert stream.dataset is not None and stream.dataset.group.store.fs.protocol[0] == "s3"
    rows = np.concatenate([b["index"].numpy() for b in stream.train_dataloader()])
    np.testing.assert_array_equal(np.sort(rows), np.sort(stream.split_result.train))
    for a, b in zip(stream.test_dataloader(), mem.test_dataloader(), strict=True):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k].numpy(), b[k].numpy())
