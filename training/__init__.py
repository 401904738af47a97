"""training: snapshots -> LightGBM models -> rolling-origin backtest -> calibration -> MLflow runs + registry."""

import os

# OpenMP threads that spin while waiting starve each other on a small, busy machine (LightGBM on
# 2 threads ran 10x slower under load); passive waiting costs nothing when the machine is idle.
# It only takes effect when set before LightGBM is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
