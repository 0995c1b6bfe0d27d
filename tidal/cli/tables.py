"""kubectl-like tables for people (`-o json|yaml` gives the objects for scripts)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.table import Table

from tidal.api.claims import ACCESS_MODES


def ready_condition(obj: dict[str, Any]) -> tuple[str, str]:
    for condition in obj.get("status", {}).get("conditions", []):
        if condition.get("type") == "Ready":
            return condition.get("status", "Unknown"), condition.get("reason", "")
    return "Unknown", ""


def ready_message(obj: dict[str, Any]) -> str:
    for condition in obj.get("status", {}).get("conditions", []):
        if condition.get("type") == "Ready":
            return str(condition.get("message", "")).split("\n")[0]
    return ""


def new_table(*columns: str) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in columns:
        table.add_column(column)
    return table


def services_table(items: list[dict[str, Any]], wide: bool) -> Table:
    columns = ["NAMESPACE", "NAME", "URL", "LATESTCREATED", "LATESTREADY", "READY", "REASON"]
    if wide:
        columns += ["GENERATION", "CLASS", "TRAFFIC", "MESSAGE"]
    table = new_table(*columns)
    for item in items:
        status = item.get("status", {})
        ready, reason = ready_condition(item)
        row = [
            item["metadata"]["namespace"],
            item["metadata"]["name"],
            status.get("url"),
            status.get("latestCreatedRevisionName"),
            status.get("latestReadyRevisionName"),
            ready,
            reason,
        ]
        if wide:
            spec = item.get("spec", {})
            annotations = spec.get("template", {}).get("metadata", {}).get("annotations", {})
            row += [
                str(item["metadata"].get("generation", "-")),
                annotations.get("autoscaling.knative.dev/class", "kpa.autoscaling.knative.dev"),
                ", ".join(
                    f"{t.get('percent', 0)}% {t.get('revisionName') or 'latest'}"
                    for t in spec.get("traffic", [])
                )
                or "100% latest",
                ready_message(item),
            ]
        table.add_row(*row)
    return table


def revisions_table(items: list[dict[str, Any]], wide: bool) -> Table:
    columns = ["NAME", "SERVICE", "GENERATION", "READY", "REASON", "STATE", "DESIRED", "ACTUAL"]
    if wide:
        columns += ["CONCURRENCY", "TIMEOUT", "PANIC", "AUTOSCALER", "MESSAGE"]
    table = new_table(*columns)
    for item in items:
        status = item.get("status", {})
        ready, reason = ready_condition(item)
        labels = item["metadata"].get("labels", {})
        autoscaler = status.get("autoscaler", {})
        row = [
            item["metadata"]["name"],
            labels.get("serving.knative.dev/service"),
            labels.get("serving.knative.dev/configurationGeneration"),
            ready,
            reason,
            autoscaler.get("active", "-"),
            str(status.get("desiredReplicas", 0)),
            str(status.get("actualReplicas", 0)),
        ]
        if wide:
            spec = item.get("spec", {})
            row += [
                str(spec.get("containerConcurrency", 0)),
                f"{spec.get('timeoutSeconds', 300)}s",
                str(autoscaler.get("inPanic", "-")),
                autoscaler.get("reason", "-"),
                ready_message(item),
            ]
        table.add_row(*row)
    return table


def routes_table(items: list[dict[str, Any]], wide: bool) -> Table:
    table = new_table("NAME", "URL", "TRAFFIC", *(["TAG URLS", "NAMESPACE"] if wide else []))
    for item in items:
        status = item.get("status", {})
        traffic = ", ".join(
            f"{t['percent']}% → {t['revisionName']}" + (f" (tag {t['tag']})" if "tag" in t else "")
            for t in status.get("traffic", [])
        )
        rollout = status.get("rollout")
        if rollout:
            traffic += "  rolling out: " + ", ".join(f"{r} {p}%" for r, p in rollout["split"])
        row = [item["metadata"]["name"], status.get("url"), traffic]
        if wide:
            tags = [f"{t['tag']}: {t['url']}" for t in status.get("traffic", []) if t.get("url")]
            row += [", ".join(tags) or "-", item["metadata"].get("namespace", "default")]
        table.add_row(*row)
    return table


def replicas_table(items: list[dict[str, Any]], wide: bool, usage: bool = False) -> Table:
    """Replicas; `wide` adds the pid, log and measured use, `usage` only the measured use."""
    columns = ["NAME", "REVISION", "POOL", "STATE", "RESTARTS", "PORT", "INFLIGHT", "STARTUP"]
    if wide or usage:
        columns += ["CPU", "CPU/REQ", "MEMORY", "GPU", "GPU MEM"]
    if wide:
        columns += ["PID", "LOG"]
    table = new_table(*columns)
    for item in items:
        startup = item.get("startupSeconds")
        row = [
            item["name"],
            item["revision"],
            item["pool"] or "-",
            _state(item),
            str(item.get("restarts", 0)),
            str(item["port"] or "-"),
            str(item["inFlight"]),
            f"{startup:.2f}s" if startup is not None else "-",
        ]
        if wide or usage:
            row += usage_cells(item)
        if wide:
            row += [str(item["pid"] or "-"), item["logPath"] or item.get("reason", "-")]
        table.add_row(*row)
    return table


def _state(item: dict[str, Any]) -> str:
    """The replica's state, and the containers that are down and why (`puller:
    CrashLoopBackOff`), as kubectl's STATUS shows a waiting container's reason."""
    down = item.get("down") or {}
    return " ".join([item["state"], *(f"({name}: {why})" for name, why in down.items())])


def usage_cells(item: dict[str, Any]) -> list[str]:
    """CPU in millicores and % of the request, memory and GPU memory in MiB, GPU in %."""
    cpu, share = item.get("cpuCores"), item.get("cpuPercentOfRequest")
    memory, gpu = item.get("memoryBytes"), item.get("gpuPercent")
    gpu_memory = item.get("gpuMemoryBytes")
    return [
        f"{cpu * 1000:.0f}m" if cpu is not None else "-",
        f"{share:.0f}%" if share is not None else "-",
        f"{memory / 2**20:.0f}Mi" if memory is not None else "-",
        f"{gpu:.0f}%" if gpu is not None else "-",
        f"{gpu_memory / 2**20:.0f}Mi" if gpu_memory is not None else "-",
    ]


def pools_table(items: list[dict[str, Any]], wide: bool) -> Table:
    columns = ["NAME", "KIND", "LABELS", "REPLICAS", "CPU", "MEMORY", "GPUS", "STARTUP"]
    if wide:
        columns += ["PRICE/REPLICA-S", "PRICE/GPU-S", "RUNNING"]
    table = new_table(*columns)

    def used(item: dict[str, Any], key: str, fmt: Any = str) -> str:
        limit = item["capacity"][key]
        return f"{fmt(item['used'][key])}/{'-' if limit is None else fmt(limit)}"

    for item in items:
        gpus = item["capacity"]["gpus"]
        extra = []
        if wide:
            price = item.get("price", {})
            extra = [
                f"{price.get('replicaSecond', 0):g}",
                f"{price.get('gpuSecond', 0):g}",
                ", ".join(item.get("replicas", [])) or "-",
            ]
        table.add_row(
            item["name"],
            item["kind"],
            ",".join(f"{k}={v}" for k, v in item["labels"].items()),
            used(item, "replicas"),
            used(item, "cpu", lambda v: f"{v:g}"),
            used(item, "memory", _bytes),
            f"{','.join(item['used']['gpus']) or '-'} of {','.join(gpus) or '-'}",
            f"{item['startupDelaySeconds']:g}s",
            *extra,
        )
    return table


def _bytes(value: float) -> str:
    for unit, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if value >= size:
            return f"{value / size:g}{unit}"
    return f"{value:g}"


def policies_table(items: list[dict[str, Any]], wide: bool) -> Table:
    columns = ["NAME", "SELECTOR", "STRATEGY", "UNITS", "WHEN-TRY-NEXT"]
    if wide:
        columns += ["NAMESPACE", "TIMEOUT", "MATCH-LABEL-KEYS", "IGNORE-TERMINATING"]
    table = new_table(*columns)
    for item in items:
        spec = item["spec"]
        units = ", ".join(
            f"{u['resource']}{u.get('nodeSelector', {})}"
            + (f" max {u['max']}" if "max" in u else "")
            for u in spec.get("units", [])
        )
        when = spec.get("whenTryNextUnits", {})
        row = [
            item["metadata"]["name"],
            ",".join(f"{k}={v}" for k, v in spec.get("selector", {}).items()),
            spec.get("strategy", "prefer"),
            units,
            when.get("policy", "LackResourceOrExceedMax"),
        ]
        if wide:
            row += [
                item["metadata"].get("namespace", "default"),
                when.get("timeout", "15m"),
                ",".join(spec.get("matchLabelKeys", [])) or "-",
                str(spec.get("ignoreTerminatingPod", True)),
            ]
        table.add_row(*row)
    return table


def domain_mappings_table(items: list[dict[str, Any]], wide: bool) -> Table:
    table = new_table("NAME", "URL", "SERVICE", "READY", "REASON", *(["NAMESPACE"] if wide else []))
    for item in items:
        ready, reason = ready_condition(item)
        row = [
            item["metadata"]["name"],
            item.get("status", {}).get("url", ""),
            item["spec"]["ref"]["name"],
            ready,
            reason,
        ]
        table.add_row(*row, *([item["metadata"].get("namespace", "default")] if wide else []))
    return table


def secrets_table(items: list[dict[str, Any]], wide: bool) -> Table:
    """Names and key counts only: values are shown with -o yaml, base64 as in kubectl."""
    table = new_table("NAME", "TYPE", "DATA", *(["NAMESPACE"] if wide else []))
    for item in items:
        row = [item["metadata"]["name"], item.get("type", "Opaque"), str(len(item.get("data", {})))]
        table.add_row(*row, *([item["metadata"].get("namespace", "default")] if wide else []))
    return table


def claims_table(items: list[dict[str, Any]], wide: bool) -> Table:
    """Claims as kubectl lists them: each is a folder under the data dir on this machine."""
    table = new_table(
        "NAME", "STATUS", "CAPACITY", "ACCESS MODES", *(["NAMESPACE"] if wide else [])
    )
    for item in items:
        status = item.get("status", {})
        modes = ",".join(ACCESS_MODES.get(m, m) for m in item["spec"]["accessModes"])
        row = [
            item["metadata"]["name"],
            status.get("phase", ""),
            status.get("capacity", {}).get("storage", ""),
            modes,
        ]
        table.add_row(*row, *([item["metadata"].get("namespace", "default")] if wide else []))
    return table


def service_accounts_table(items: list[dict[str, Any]], wide: bool) -> Table:
    table = new_table("NAME", "IMAGE PULL SECRETS", *(["NAMESPACE"] if wide else []))
    for item in items:
        pulls = ",".join(ref["name"] for ref in item.get("imagePullSecrets", [])) or "<none>"
        row = [item["metadata"]["name"], pulls]
        table.add_row(*row, *([item["metadata"].get("namespace", "default")] if wide else []))
    return table


def namespaces_table(items: list[dict[str, Any]], wide: bool) -> Table:
    table = new_table("NAME", "STATUS")
    for item in items:
        table.add_row(item["metadata"]["name"], item.get("status", {}).get("phase", ""))
    return table


def config_maps_table(items: list[dict[str, Any]], wide: bool) -> Table:
    table = new_table("NAME", "DATA", *(["NAMESPACE"] if wide else []))
    for item in items:
        count = len(item.get("data", {})) + len(item.get("binaryData", {}))
        row = [item["metadata"]["name"], str(count)]
        table.add_row(*row, *([item["metadata"].get("namespace", "default")] if wide else []))
    return table


def events_table(items: list[dict[str, Any]], now: datetime | None = None) -> Table:
    """Events as `kubectl get events` shows them: how long ago, type, reason, message."""
    now = now or datetime.now(UTC)
    table = new_table("LAST SEEN", "TYPE", "REASON", "MESSAGE")
    for item in items:
        when = datetime.fromisoformat(item["lastTimestamp"].replace("Z", "+00:00"))
        seconds = max(0, int((now - when).total_seconds()))
        age = (
            f"{seconds}s"
            if seconds < 120
            else f"{seconds // 60}m"
            if seconds < 7200
            else f"{seconds // 3600}h"
        )
        table.add_row(age, item["type"], item["reason"], item["message"])
    return table


TABLES = {
    "services": services_table,
    "revisions": revisions_table,
    "routes": routes_table,
    "replicas": replicas_table,
    "pools": pools_table,
    "resourcepolicies": policies_table,
    "domainmappings": domain_mappings_table,
    "secrets": secrets_table,
    "configmaps": config_maps_table,
    "persistentvolumeclaims": claims_table,
    "serviceaccounts": service_accounts_table,
    "namespaces": namespaces_table,
}
