"""Reports: boards (markdown, CSV, figures, README block, terminal summary) rendered from a suite's
results data alone (:mod:`zepad_bench.reports.data`, docs/results.md).

Only :mod:`zepad_bench.reports.collect` reads a suite, its plugins and the results store; every
other module here is a pure function of a :class:`~zepad_bench.reports.data.Board` and imports
neither torch nor plugins, so ``zepad-bench leaderboard FILE.json`` renders anywhere.
"""
