"""Read-only views of studies: loading, Pareto fronts, hypervolume, plots, export, the dashboard."""
