"""List, then watch from the list's version, as client-go's informers do, in the calling thread
(the client is synchronous): the pods the runtime follows, the specs users write."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import watch


def list_then_watch(
    list_call: Callable[..., Any],
    args: tuple[Any, ...],
    on_list: Callable[[list[dict[str, Any]]], None],
    on_event: Callable[[str, dict[str, Any]], None],
    closed: threading.Event,
    retry_after: Callable[[Exception], float],
    watch_timeout_s: int = 300,
    **params: Any,
) -> None:
    """Until `closed`: `on_list(items)` with a fresh list, then `on_event(type, object)` for each
    change after it. Any error (the API server went away, 410 Gone, a timeout) lists again
    after `retry_after(error)` seconds."""
    while not closed.is_set():
        try:
            response = list_call(*args, _preload_content=False, _request_timeout=30, **params)
            listed = json.loads(response.data)
            on_list(listed["items"])
            stream = watch.Watch().stream(
                list_call,
                *args,
                resource_version=listed["metadata"].get("resourceVersion"),
                timeout_seconds=watch_timeout_s,
                _request_timeout=(10, watch_timeout_s + 10),
                **params,
            )
            for event in stream:
                if closed.is_set():
                    return
                on_event(event["type"], event["raw_object"])
        except Exception as exc:
            if closed.is_set():
                return
            closed.wait(retry_after(exc))
