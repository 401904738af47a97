"""training: snapshots -> LightGBM models -> rolling-origin backtest -> calibration -> MLflow runs + registry."""
