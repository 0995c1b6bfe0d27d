"""`$(VAR)` references in a container's command, args and env values, expanded as the kubelet
expands them (docs/containers.md#variable-references).

`$(NAME)` becomes the variable's value; a name that is not defined is left as written, `$(NAME)`;
`$$` is one `$`, so `$$(NAME)` is the literal text `$(NAME)`; any other `$` is kept. An env value
sees the variables defined before it (envFrom, then the env entries above it); the command and
args see the container's whole environment, `PORT` and `K_*` included, which is how a Knative
manifest writes `args: ["--port=$(PORT)"]`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def expand(text: str, env: Mapping[str, str]) -> str:
    """`text` with its references to `env` filled in."""
    if "$" not in text:
        return text
    out: list[str] = []
    cursor = 0
    while (start := text.find("$", cursor)) != -1 and start + 1 < len(text):
        out.append(text[cursor:start])
        after = text[start + 1]
        if after == "$":  # escaped
            out.append("$")
            cursor = start + 2
        elif after == "(" and (end := text.find(")", start + 2)) != -1:
            name = text[start + 2 : end]
            out.append(env.get(name, f"$({name})"))
            cursor = end + 1
        else:  # a `$` that starts no reference, kept with the character after it
            out.append(text[start : start + 2])
            cursor = start + 2
    out.append(text[cursor:])
    return "".join(out)


def expand_all(texts: Iterable[str], env: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(expand(text, env) for text in texts)
