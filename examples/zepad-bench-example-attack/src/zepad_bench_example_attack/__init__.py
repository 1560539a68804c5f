"""An example zepad-bench plugin package (the attack lives in :mod:`zepad_bench_example_attack.plugin`)."""
