"""jaxderain: why deraining networks fail on unseen rain, studied in JAX."""
