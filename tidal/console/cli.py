"""`tidal console`: open the web console of the platform the CLI talks to."""

from __future__ import annotations

import webbrowser

import click

from tidal.cli.client import TIDAL, ApiError, Client


@click.command("console")
@click.option("--no-browser", is_flag=True, help="Only print the console's URL.")
@click.pass_obj
def console_command(client: Client, no_browser: bool) -> None:
    """Open the web console (the admin API's URL) in a browser; print the URL."""
    server = getattr(client, "server", None)
    if server is None:
        raise click.UsageError("the console is served by `tidal up`; pass --server, not a cluster")
    try:
        client.call("GET", f"{TIDAL}/info")  # up, and the token (if any) works
    except ApiError as exc:
        raise click.ClickException(f"{server}: {exc}") from None
    url = f"{server}/console/"
    click.echo(f"tidal console: {url}")
    click.echo("log in with the admin token: the file admin-token in the platform's data dir")
    if no_browser:
        return
    if not webbrowser.open(url):
        click.echo("no browser found here: open the URL above in one", err=True)
