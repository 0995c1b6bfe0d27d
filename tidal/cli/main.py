"""The `tidal` command: `up` runs the platform; the other verbs talk to its admin API."""

from __future__ import annotations

import importlib
import socket
import time
from pathlib import Path
from typing import Any

import click

from tidal.api.config import GatewayLimits, load_config, parse_gateway_limits
from tidal.api.errors import InvalidSpec
from tidal.cli.client import (
    DEFAULT_SERVER,
    DELETABLE,
    KNATIVE,
    KNATIVE_BETA,
    RESOURCES,
    TIDAL,
    ApiError,
    Client,
    console,
    credentials,
    load_manifests,
    output,
    resource_path,
)
from tidal.cli.params import HttpUrl
from tidal.cli.progress import PROGRESS_MIN_DOCS, progress
from tidal.cli.tables import (
    TABLES,
    events_table,
    new_table,
    ready_condition,
    replicas_table,
    revisions_table,
    routes_table,
)
from tidal.gateway.hosts import url

WATCH_PERIOD_S = 1.0  # `tidal get -w` polls the admin API this often
DESCRIBE_EVENTS = 10  # `tidal describe` shows this many of the newest events

# Verbs whose modules import heavy libraries (numpy, matplotlib, the Kubernetes client) are
# loaded only when used, so that `tidal get` starts fast (Click's lazy-group pattern).
LAZY_COMMANDS = {
    "backtest": "tidal.cli.predictive:backtest",
    "console": "tidal.console.cli:console_command",
    "exec": "tidal.cli.remote_exec:exec_command",
    "forecast": "tidal.cli.predictive:forecast",
    "history": "tidal.cli.predictive:history",
    "kubernetes": "tidal.cli.kubernetes:kubernetes",
    "port-forward": "tidal.cli.port_forward:port_forward_command",
    "simulate": "tidal.sim.cli:simulate",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in LAZY_COMMANDS:
            return super().get_command(ctx, name)
        module, attribute = LAZY_COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attribute)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Accept flags anywhere on the line, as kubectl does: `get services --server URL`
        and `-n prod get services` both work (see `kubectl_order`)."""
        return super().parse_args(ctx, kubectl_order(self, ctx, args))


def _options(command: click.Command, ctx: click.Context) -> dict[str, bool]:
    """Option spellings of a command (and of its subcommands, for a group) -> takes a value."""
    found: dict[str, bool] = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for spelling in (*param.opts, *param.secondary_opts):
                found[spelling] = not (param.is_flag or param.count)
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None:
                found.update({k: v for k, v in _options(sub, ctx).items() if k not in found})
    return found


# Verb flags that take no value, for reading `tidal -A get services` before the verb is known.
_VERB_FLAGS = frozenset({"-A", "--all-namespaces", "-w", "--watch", "--dry-run", "--force"})


def _split(args: list[str], options: dict[str, bool]) -> tuple[list[str], list[str]]:
    """(occurrences of `options` in args, with their values; the other args), up to `--`."""
    taken: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest += args[index:]
            break
        name = arg.split("=", 1)[0] if arg.startswith("--") else arg
        if name in options:
            taken.append(arg)
            if options[name] and "=" not in arg and index + 1 < len(args):
                taken.append(args[index + 1])
                index += 1
        else:
            rest.append(arg)
        index += 1
    return taken, rest


def kubectl_order(group: click.Group, ctx: click.Context, args: list[str]) -> list[str]:
    """Reorder the command line so that Click can parse it: the group's own options (--server,
    --kubeconfig, --context, ...) go before the verb wherever they were written, unless the verb
    has an option of the same name; a verb's options written before the verb (`-n NS`, `-o wide`)
    go after it."""
    own = _options(click.Command(None, params=group.params), ctx)  # not its subcommands
    index = 0  # find the verb: the first word that is not an option or an option's value
    while index < len(args) and args[index].startswith("-") and args[index] != "--":
        name = args[index].split("=", 1)[0]
        takes_value = own.get(name, name not in _VERB_FLAGS)
        index += 2 if takes_value and "=" not in args[index] else 1
    command = group.get_command(ctx, args[index]) if index < len(args) else None
    if command is None:
        return args
    verb_options = _options(command, ctx)
    global_options = {k: v for k, v in own.items() if k not in verb_options}
    moved, after = _split(args[index + 1 :], global_options)
    front, misplaced = _split(args[:index], own)
    return [*front, *moved, args[index], *misplaced, *after]


@click.group(cls=LazyGroup)
@click.option(
    "--server",
    envvar="TIDAL_SERVER",
    type=HttpUrl(),
    default=DEFAULT_SERVER,
    show_default=True,
    help="Admin API of the platform (or TIDAL_SERVER).",
)
@click.option("--kubeconfig", help="Talk to the tidal running in this cluster.")
@click.option("--context", help="The kubeconfig context of the cluster (implies --kubeconfig).")
@click.option(
    "--token",
    envvar="TIDAL_TOKEN",
    help="Admin API token (or TIDAL_TOKEN); found by itself for a platform started here.",
)
@click.option("--token-file", envvar="TIDAL_TOKEN_FILE", help="Read the admin token from a file.")
@click.option("--ca-cert", envvar="TIDAL_CA_CERT", help="CA (or self-signed cert) of a TLS admin.")
@click.pass_context
def main(
    ctx: click.Context,
    server: str,
    kubeconfig: str | None,
    context: str | None,
    token: str | None,
    token_file: str | None,
    ca_cert: str | None,
) -> None:
    """tidal: serverless AI inference from Knative Service manifests."""
    if kubeconfig or context:
        from tidal.cli.kubernetes import ClusterClient

        ctx.obj = ClusterClient(kubeconfig, context, token=token)
    else:
        ctx.obj = Client(server, *credentials(server, token, token_file, ca_cert))


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="tidal.yaml")
@click.option("--data-dir", default=".tidal", show_default=True, type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int, help="Gateway port.")
@click.option("--admin-port", default=8081, show_default=True, type=int)
@click.option(
    "--kube-port",
    default=6443,
    show_default=True,
    type=int,
    help="HTTPS port of the Kubernetes API for kubectl, if no --tls-cert (0: any free one).",
)
@click.option(
    "--admin-host", default="127.0.0.1", show_default=True, help="Admin API address (not --host)."
)
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), help="TLS for both.")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True))
@click.option("--protect-metrics", is_flag=True, help="/metrics needs the token too.")
@click.option("--domain", default=None, help="Domain of service hosts (default example.com).")
@click.option("-f", "--filename", "files", multiple=True, help="Manifests to apply at start.")
@click.option(
    "--drain-timeout", help="On SIGTERM/Ctrl-C, how long in-flight requests may take (30s)."
)
@click.option(
    "--container-engine",
    type=click.Choice(["auto", "podman", "docker"]),
    default="auto",
    show_default=True,
    envvar="TIDAL_CONTAINER_ENGINE",
    help="Runs manifests that name only an image (auto: podman, else docker).",
)
@click.option(
    "--gateway-workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Gateway processes sharing --port (the data plane runs apart from the controller).",
)
def up(
    config_path: str | None,
    data_dir: str,
    host: str,
    port: int,
    admin_port: int,
    kube_port: int,
    admin_host: str,
    tls_cert: str | None,
    tls_key: str | None,
    protect_metrics: bool,
    domain: str | None,
    files: tuple[str, ...],
    drain_timeout: str | None,
    container_engine: str,
    gateway_workers: int,
) -> None:
    """Run the platform: admin API and controller in this process, the gateway in worker
    processes of its own."""
    import asyncio
    import dataclasses

    from tidal.controller.serve import ServeOptions, serve
    from tidal.security.datadir import DataDirInUse
    from tidal.store.sqlite import StoreError

    try:
        config = load_config(config_path)
    except InvalidSpec as exc:
        raise click.ClickException(f"config: {exc}") from None
    if domain:
        config = dataclasses.replace(config, domain=domain)
    config = dataclasses.replace(config, limits=_drain_option(config.limits, drain_timeout))
    options = ServeOptions(
        config, Path(data_dir).resolve(), host, port, admin_port, load_manifests(files)
    )
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    options.admin_host, options.metrics_need_token = admin_host, protect_metrics
    options.kube_port = kube_port
    if tls_cert and tls_key:
        options.tls_cert, options.tls_key = Path(tls_cert).resolve(), Path(tls_key).resolve()
    options.container_engine = container_engine
    options.gateway_workers = gateway_workers

    def ready(platform: Any, info: dict[str, Any]) -> None:
        from tidal.cli.kubeconfig import FILE

        console.print(f"[bold green]tidal is up[/] (data: {info['dataDir']})")
        console.print(f"  gateway   {info['gateway']}")
        console.print(f"  admin API {info['admin']}   metrics {info['admin']}/metrics")
        console.print(f"  admin token in {info['dataDir']}/admin-token (a local CLI finds it)")
        kubectl = f"kubectl --kubeconfig {Path(data_dir) / FILE} get ksvc"
        console.print(
            f"  kubectl   {info['kube']} (TLS), kubeconfig {info['kubeconfig']}", markup=False
        )
        console.print(f"    {kubectl}", soft_wrap=True, markup=False)
        console.print(f"  {info['containers']}", markup=False)
        for valid in platform.services.values():
            svc_url = url(valid.name, valid.namespace, config.domain, public=valid.public)
            console.print(f"  service [bold]{valid.name}[/]: {svc_url}")
            svc_host = svc_url.removeprefix("http://")
            serving = valid.service.spec.template.spec.serving
            if any(port.name == "h2c" for port in serving.ports):  # gRPC, most likely
                console.print(f"    HTTP/2 or gRPC: {info['gateway']} with authority {svc_host}")
            else:
                console.print(f"    curl -H 'Host: {svc_host}' {info['gateway']}/", soft_wrap=True)
        for key in info["kept"]:
            kind, namespace, name = key.split("/", 2)
            console.print(
                f"  -f: {kind} {namespace}/{name} unchanged since the last start: the stored one "
                "is kept, with changes made since (`tidal apply -f` applies the file anyway)",
                markup=False,
            )
        console.print("Ctrl-C stops the platform; state is kept for the next `tidal up`.")

    try:
        try:
            import uvloop

            uvloop.run(serve(options, ready))
        except ImportError:
            asyncio.run(serve(options, ready))
    except (DataDirInUse, StoreError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        if exc.filename:  # the data dir or a file in it, not a port
            raise click.ClickException(f"{exc.filename}: {exc.strerror or exc}") from None
        raise click.ClickException(
            f"{exc.strerror or exc} (is another tidal running? try {_held_port(options)})"
        ) from None
    except ValueError as exc:  # InvalidSpec, or a certificate that does not load
        raise click.ClickException(str(exc)) from None


def _held_port(options: Any) -> str:
    """The option whose port another process holds (tried once the platform has let go of its
    own), to name in the error; all three when none can be told apart."""
    ports = (
        ("--port", options.host, options.port),
        ("--admin-port", options.admin_host, options.admin_port),
        ("--kube-port", options.admin_host, options.kube_port),
    )
    for flag, host, port in ports:
        if not port:
            continue
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
            try:
                probe.bind((host, port))
            except OSError:
                return f"another {flag} than {port}"
    return "--port/--admin-port/--kube-port"


@main.command()
@click.option("--data-dir", default=".tidal", show_default=True, type=click.Path(file_okay=False))
@click.option(
    "--merge",
    is_flag=True,
    help="Add it as context `tidal` to $KUBECONFIG's first file or ~/.kube/config.",
)
def kubeconfig(data_dir: str, merge: bool) -> None:
    """Print the kubeconfig `tidal up` wrote, for kubectl (or merge it into yours)."""
    from tidal.cli.kubeconfig import FILE, default_target, merge_into

    source = Path(data_dir) / FILE
    if not source.exists():
        raise click.ClickException(f"no {source}: start the platform with `tidal up` first")
    if not merge:
        click.echo(source.read_text(), nl=False)
        return
    target = default_target()
    try:
        merge_into(source, target)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"context tidal written to {target} (kubectl config use-context tidal)")


@main.command()
@click.option(
    "--controller",
    type=HttpUrl(),
    default=DEFAULT_SERVER,
    show_default=True,
    help="Admin API of the controller whose routing this gateway follows.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=int)
@click.option("--id", "gateway_id", default=None, help="Name in the controller's stats.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="tidal.yaml")
@click.option("--drain-timeout", help="On SIGTERM/Ctrl-C, how long in-flight requests may take.")
@click.pass_context
def gateway(
    ctx: click.Context,
    controller: str,
    host: str,
    port: int,
    gateway_id: str | None,
    config_path: str | None,
    drain_timeout: str | None,
) -> None:
    """Run one more gateway process in front of the platform's replicas (like Knative's
    activators: it routes with the controller's state and reports its stats to it). It
    authenticates with --token/TIDAL_TOKEN/--token-file, or the token of a local platform."""
    import os
    import socket

    import uvloop

    from tidal.gateway.mirror import Unauthorized, run_gateway
    from tidal.runtime.hygiene import make_non_dumpable

    try:
        limits = _drain_option(load_config(config_path).limits, drain_timeout)
    except InvalidSpec as exc:
        raise click.ClickException(f"config: {exc}") from None
    make_non_dumpable()
    root = ctx.find_root().params
    token, ca_cert = credentials(controller, root["token"], root["token_file"], root["ca_cert"])
    name = gateway_id or f"{socket.gethostname()}-{os.getpid()}"
    try:
        uvloop.run(run_gateway(controller, host, port, name, token, ca_cert, limits))
    except Unauthorized as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"{exc.strerror or exc} (try another --port)") from None


@main.command()
@click.option("-f", "--filename", "files", multiple=True, required=True)
@click.option("--dry-run", is_flag=True, help="Validate only; store nothing.")
@click.option("-o", "--output", "fmt", type=click.Choice(["json", "yaml"]))
@click.pass_obj
def apply(client: Client, files: tuple[str, ...], dry_run: bool, fmt: str | None) -> None:
    """Create or update services from Knative YAML (all documents, or none)."""
    docs = load_manifests(files)
    query = "?dryRun=true" if dry_run else ""
    with progress(f"applying {len(docs)} documents", enabled=len(docs) >= PROGRESS_MIN_DOCS):
        result = client.call("POST", f"{TIDAL}/apply{query}", {"items": docs})
    if fmt:
        output({k: v for k, v in result.items() if k != "results"}, fmt)
        return
    results = result.get("results") or ["configured"] * len(result["items"])
    for item, done in zip(result["items"], results, strict=True):
        verb = f"{done} (dry run)" if dry_run else done
        if item["kind"] != "Service":
            click.echo(f"{item['kind'].lower()}/{item['metadata']['name']} {verb}")
            continue
        status = item.get("status", {})
        click.echo(
            f"service/{item['metadata']['name']} {verb} "
            f"(revision {status.get('latestCreatedRevisionName')}, url {status.get('url')})"
        )


@main.command()
@click.argument("resource")
@click.argument("name", required=False)
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-A", "--all-namespaces", is_flag=True)
@click.option("-o", "--output", "fmt", type=click.Choice(["json", "yaml", "wide"]))
@click.option("-w", "--watch", is_flag=True, help="Keep watching; print again on every change.")
@click.pass_obj
def get(
    client: Client,
    resource: str,
    name: str | None,
    namespace: str,
    all_namespaces: bool,
    fmt: str | None,
    watch: bool,
) -> None:
    """List services, revisions, routes, replicas, pools, resource policies, domain mappings,
    secrets, config maps, persistent volume claims, service accounts or namespaces."""
    plural = RESOURCES.get(resource)
    if plural is None:
        raise click.ClickException(
            f"unknown resource {resource!r} (services, revisions, routes, replicas, pools, "
            "resourcepolicies, domainmappings, secrets, configmaps, pvc, sa, ns)"
        )
    last = None
    while True:
        result = _fetch(client, plural, name, None if all_namespaces else namespace)
        if result != last:
            if fmt in ("json", "yaml"):
                output(result, fmt)
            else:
                console.print(TABLES[plural](result.get("items", [result]), fmt == "wide"))
            last = result
        if not watch:
            return
        try:
            time.sleep(WATCH_PERIOD_S)
        except KeyboardInterrupt:
            return


def _fetch(client: Client, plural: str, name: str | None, namespace: str | None) -> dict[str, Any]:
    """One object, or a List, as the admin API gives it; a name that matches nothing is an
    error, as in kubectl."""
    ns_path = "" if namespace is None else f"/namespaces/{namespace}"
    if plural in ("replicas", "pools"):
        path = f"{TIDAL}{ns_path}/replicas" if plural == "replicas" else f"{TIDAL}/pools"
        items = client.call("GET", path)["items"]
        if name:
            items = [i for i in items if name in (i.get("service"), i.get("revision"), i["name"])]
            if not items:
                where = "" if plural == "pools" else f" in {namespace or 'any namespace'}"
                raise click.ClickException(f'{plural} "{name}" not found{where}')
        return {"apiVersion": "v1", "kind": "List", "items": items}
    if name:
        return client.call("GET", resource_path(plural, namespace or "default", name))
    return client.call("GET", resource_path(plural, namespace))


@main.command()
@click.argument("resource", type=click.Choice(["service", "services", "svc", "ksvc"]))
@click.argument("name")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.pass_obj
def describe(client: Client, resource: str, name: str, namespace: str) -> None:
    """A service with its revisions, traffic and replicas, and why it is (not) ready."""
    service = client.call("GET", f"{KNATIVE}/namespaces/{namespace}/services/{name}")
    route = client.call("GET", f"{KNATIVE}/namespaces/{namespace}/routes/{name}")
    revisions = client.call("GET", f"{KNATIVE}/namespaces/{namespace}/revisions")["items"]
    revisions = [
        r for r in revisions if r["metadata"]["labels"].get("serving.knative.dev/service") == name
    ]
    replicas = [
        r
        for r in client.call("GET", f"{TIDAL}/namespaces/{namespace}/replicas")["items"]
        if r["service"] == name
    ]
    mapped = client.call("GET", f"{KNATIVE_BETA}/namespaces/{namespace}/domainmappings")["items"]
    domains = [m["status"]["url"] for m in mapped if m["spec"]["ref"]["name"] == name]
    status = service.get("status", {})
    ready, reason = ready_condition(service)
    console.print(f"[bold]Service[/] {namespace}/{name}   URL {status.get('url')}")
    if domains:
        console.print(f"Domains: {', '.join(domains)}", markup=False)
    console.print(f"Ready: {ready} {reason}")
    for condition in status.get("conditions", []):
        if condition.get("message"):
            console.print(f"  {condition['message']}", markup=False)
    console.print()
    console.print("[bold]Traffic[/]")
    console.print(routes_table([route], False))
    console.print()
    console.print("[bold]Revisions[/]")
    console.print(revisions_table(revisions, False))
    for revision in revisions:
        autoscaler = revision.get("status", {}).get("autoscaler")
        if autoscaler:
            holds = ""
            if "pendingCap" in autoscaler:
                holds = f"{autoscaler['mode']} mode (up to {autoscaler['pendingCap']} wait), "
            console.print(
                f"  {revision['metadata']['name']}: {autoscaler['active']}, "
                f"panic={autoscaler['inPanic']}, {holds}{autoscaler['reason']}",
                markup=False,
            )
        for reason in revision.get("status", {}).get("pendingReplicas", []):
            console.print(f"  {revision['metadata']['name']}: pending: {reason}", markup=False)
        for condition in revision.get("status", {}).get("conditions", []):
            if condition.get("message"):
                console.print(
                    f"  {revision['metadata']['name']}: {condition['message']}", markup=False
                )
    console.print()
    console.print("[bold]Replicas[/]")
    console.print(replicas_table(replicas, False, usage=True))
    events = [
        e
        for e in client.call("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
        if e["involvedObject"]["kind"] == "Service" and e["involvedObject"]["name"] == name
    ]
    if events:
        console.print()
        console.print(f"[bold]Events[/] (the last {min(len(events), DESCRIBE_EVENTS)})")
        console.print(events_table(events[-DESCRIBE_EVENTS:]))


@main.command()
@click.argument("resource", required=False)
@click.argument("name", required=False)
@click.option("-f", "--filename", "files", multiple=True)
@click.option("-n", "--namespace", default="default", show_default=True)
@click.pass_obj
def delete(
    client: Client, resource: str | None, name: str | None, files: tuple[str, ...], namespace: str
) -> None:
    """Delete a service, resource policy, domain mapping, secret, config map, persistent
    volume claim, service account or namespace (with everything in it) (`delete service
    NAME`, `delete -f FILE`)."""
    singular = {plural: one for plural, one in DELETABLE.values()}
    targets: list[tuple[str, str, str]] = []
    if files:
        for doc in load_manifests(files):
            meta = doc.get("metadata", {})
            plural = DELETABLE.get(doc.get("kind", ""), DELETABLE["Service"])[0]
            targets.append((plural, meta.get("namespace", "default"), meta.get("name", "")))
    elif RESOURCES.get(resource or "") in singular and name:
        targets.append((RESOURCES[resource or ""], namespace, name))
    else:
        raise click.UsageError(
            "use `tidal delete service NAME` (or resourcepolicy, domainmapping, secret, "
            "configmap, pvc, sa, namespace) or `tidal delete -f FILE`"
        )
    # A namespace goes last: deleting it deletes what the file lists in it too.
    targets.sort(key=lambda target: target[0] == "namespaces")
    for plural, ns, target in targets:
        client.call("DELETE", resource_path(plural, ns, target))
        click.echo(f"{singular[plural]}/{target} deleted")


@main.command()
@click.argument("name")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--revision", help="Only this revision's replicas.")
@click.option(
    "--tail", type=click.IntRange(min=0), default=100, show_default=True, help="Lines per replica."
)
@click.option(
    "-f",
    "--follow",
    is_flag=True,
    help="Then keep printing what the replicas write, new ones too, until Ctrl-C or the "
    "service is deleted.",
)
@click.pass_obj
def logs(
    client: Client, name: str, namespace: str, revision: str | None, tail: int, follow: bool
) -> None:
    """Output of the service's replicas."""
    if revision:
        found = client.call("GET", f"{KNATIVE}/namespaces/{namespace}/revisions/{revision}")
        owner = found["metadata"].get("labels", {}).get("serving.knative.dev/service")
        if owner != name:
            raise click.ClickException(f"revision {revision!r} belongs to service {owner!r}")
    query = f"?tail={tail}" + (f"&revision={revision}" if revision else "")
    path = f"{TIDAL}/namespaces/{namespace}/services/{name}/logs{query}"
    if follow:
        out = click.get_binary_stream("stdout")
        try:
            for chunk in client.stream(f"{path}&follow=true"):
                out.write(chunk)
                out.flush()
        except KeyboardInterrupt:
            pass
        return
    text = client.call("GET", path, text=True)
    if not text:
        click.echo(f"no logs yet for {revision or name} (no replica has started)", err=True)
    click.echo(text, nl=False)


@main.command()
@click.argument("name")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option(
    "--to",
    "splits",
    multiple=True,
    required=True,
    help="REVISION=PERCENT, or latest=PERCENT; repeat to split.",
)
@click.option("--tag", "tags", multiple=True, help="REVISION=TAG (or latest=TAG).")
@click.option("--force", is_flag=True, help="Route to a failed revision anyway.")
@click.pass_obj
def traffic(
    client: Client,
    name: str,
    namespace: str,
    splits: tuple[str, ...],
    tags: tuple[str, ...],
    force: bool,
) -> None:
    """Set the traffic split, e.g. roll back with `--to hello-00001=100`."""
    tag_of: dict[str, str] = {}
    for pair in tags:
        revision, tag = _pair(pair, "--tag")
        if revision in tag_of:
            raise click.BadParameter(f"{revision!r} is tagged twice", param_hint="--tag")
        tag_of[revision] = tag
    targets = []
    for split in splits:
        revision, percent = _pair(split, "--to")
        if not percent.isdigit() or int(percent) > 100:
            raise click.BadParameter(
                f"{split!r}: PERCENT must be a whole number from 0 to 100", param_hint="--to"
            )
        target: dict[str, Any] = {"percent": int(percent)}
        if revision == "latest":
            target["latestRevision"] = True
        else:
            target["revisionName"] = revision
        if revision in tag_of:
            target["tag"] = tag_of.pop(revision)
        targets.append(target)
    for revision, tag in tag_of.items():
        targets.append(
            {
                "tag": tag,
                "percent": 0,
                **(
                    {"latestRevision": True} if revision == "latest" else {"revisionName": revision}
                ),
            }
        )
    path = f"{KNATIVE}/namespaces/{namespace}/services/{name}"
    for attempt in range(3):
        # Read-modify-write guarded by resourceVersion; retried if a status update got between.
        service = client.call("GET", path)
        service["spec"]["traffic"] = targets
        service.pop("status", None)
        try:
            query = "?force=true" if force else ""
            client.call("POST", f"{TIDAL}/apply{query}", {"items": [service]})
            break
        except ApiError as exc:
            if "was modified" not in exc.message or attempt == 2:
                raise
    route = client.call("GET", f"{KNATIVE}/namespaces/{namespace}/routes/{name}")
    console.print(routes_table([route], False))


def _drain_option(limits: GatewayLimits, drain_timeout: str | None) -> GatewayLimits:
    if drain_timeout is None:
        return limits
    try:
        return parse_gateway_limits({"drain-timeout": drain_timeout}, limits)
    except InvalidSpec as exc:
        raise click.BadParameter(exc.message, param_hint="--drain-timeout") from None


def _pair(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise click.BadParameter(f"{text!r}: expected NAME=VALUE", param_hint=option)
    return key, value


@main.command()
@click.option("--since", default="24h", show_default=True, help="How far back, e.g. 1h, 30m.")
@click.option("-o", "--output", "fmt", type=click.Choice(["json", "yaml"]))
@click.pass_obj
def cost(client: Client, since: str, fmt: str | None) -> None:
    """Replica-seconds, GPU-seconds and cost per service, revision and pool."""
    from tidal.api.units import parse_duration

    try:
        start = time.time() - parse_duration(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    result = client.call("GET", f"{TIDAL}/cost?start={start}")
    if fmt:
        output(result, fmt)
        return
    table = new_table("SERVICE", "REVISION", "POOL", "REPLICA-SECONDS", "GPU-SECONDS", "COST")
    total = 0.0
    for item in result["items"]:
        total += item["cost"]
        table.add_row(
            item["service"],
            item["revision"],
            item["pool"],
            f"{item['replicaSeconds']:.1f}",
            f"{item['gpuSeconds']:.1f}",
            f"{item['cost']:.4f}",
        )
    console.print(table)
    console.print(f"total cost {total:.4f} over the last {since}")
    unpriced = [
        pool["name"]
        for pool in client.call("GET", f"{TIDAL}/pools")["items"]
        if not any(pool.get("price", {}).values())
    ]
    if unpriced:
        click.echo(
            f"note: no price for pool(s) {', '.join(unpriced)}: their replicas cost 0. Set "
            "pools[].price in the config of `tidal up --config` (see examples/tidal.yaml).",
            err=True,
        )
