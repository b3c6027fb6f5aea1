"""Opening a study's Optuna storage, once: URLs, the study folder layout, the baselines' study."""
