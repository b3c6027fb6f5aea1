"""The pure description of networks: RK and baseline specs, the name grammars, analytic counting (no torch)."""
