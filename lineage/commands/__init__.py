"""CLI command modules; each defines ``register(cli)``. Loaded in name order by ``lineage.cli``."""
