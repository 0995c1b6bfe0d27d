"""Cluster mode: connecting to the API server, the controller's entrypoint, following and
checking what kubectl writes to tidal's resources, install manifests."""
