"""`studio bench ...`: benchmarks that print figures, one module per benchmark.

The package may import any part of studio; nothing in studio.core, store, train or ui imports it
(an import-linter contract), so no benchmark code ships into the app's start or the worker.
"""
