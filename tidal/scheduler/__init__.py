"""Pure scheduling: replicas onto pools by ResourcePolicy, GPU devices, cost (docs/pools.md)."""
