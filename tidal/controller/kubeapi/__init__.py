"""The Kubernetes API for tidal's resources, so that kubectl works against a local tidal
(docs/kubectl.md); `server.add_routes` serves it. Importing the package loads nothing else, so
the CLI can use its wire formats (`spdy`) without the server."""
