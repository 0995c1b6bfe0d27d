"""Cluster mode: connecting to the API server, the controller's entrypoint, install manifests."""
