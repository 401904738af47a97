"""Monitoring: how good past scores turned out to be, and warnings before the outcomes land.

Reads the score history (`serving.history`), the models and their runs from MLflow, and the data
folder; never `training` internals. `monitoring.monitor.run_monitor` returns every figure (a
console page can render the same `Monitoring` object), `tierwise monitor` is its command line.
"""
