"""The web console on the admin listener (docs/console.md): `routes.mount` registers it on the
admin app, `cli` is `tidal console`, `report` writes a simulator report as an HTML page."""
