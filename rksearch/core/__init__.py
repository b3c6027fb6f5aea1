"""Foundations every layer may use: errors, atomic files, YAML reading, objectives, stop signals."""
