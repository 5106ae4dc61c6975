"""Plain-Python domain layer: types, run configs, metric names, statistics. No Qt, no torch."""
