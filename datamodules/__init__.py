"""Files -> cache -> batches: the dataset protocol and table (``protocol``, ``registry``; NMED-T/H in ``nmed``), demo
data (``synthetic``, ``synthetic_dipole``), ``prepare`` and the cache, splits, the no-music control and
``NMEDDataModule``. ``docs/datasets.md`` adds a dataset."""
