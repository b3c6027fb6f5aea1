"""Cheap stand-ins for a full training: zero-cost scores, pre-screening, fidelity and rank statistics."""
