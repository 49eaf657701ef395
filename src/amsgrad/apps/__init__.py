"""The application layer: the ``amsgrad`` command line, the documentation's demo, the Reddi et
al. (2018) experiment and the benchmark suite. Built on the public API; nothing imports it."""
