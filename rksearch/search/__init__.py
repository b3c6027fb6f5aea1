"""The search: driver, Optuna/Ray searcher, trial function, liveness, calibration, replay."""
