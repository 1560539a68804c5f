"""Built-in zepad-bench plugins (import name ``zepad_bench_plugins``), registered via entry points."""
