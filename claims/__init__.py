"""The paper's findings as pytest claims, and the replication report they produce.

Sub-packages by job, each importing only those below it: storage (atomic writes, locks, leases,
the cache root), records (computing and storing a checkpoint's record), statistics (measurements,
intervals, windows, verdicts), catalogue (the checks and the paper's findings), running (a suite's
options, series and executors), reporting (table, claims.json, HTML, figures) and exploring
(labelled arrays, exports, unit drill-downs). The checkpoint providers are `claims.fixtures`
(the repository's fixtures/ folder); the pytest plugin is `claims.plugin`, the CLI `claims.cli`.
"""
