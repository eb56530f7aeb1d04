"""The study: grids of grid points, sweeps, complexity, reports and verdicts."""
