"""chanmusic benchmarks (``make bench``): ``run.py`` is the driver, one ``bench_*.py`` file per benchmark,
``common.py`` what they share and ``results.py`` the table and ``results.json``."""
