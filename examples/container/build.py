"""Build the example image without a registry: a static busybox and a shell script.

    python3 examples/container/build.py [--engine podman|docker] [--tag localhost/tidal-example:1]

Needs a statically linked busybox (Debian: `apt-get install busybox-static`) and podman or docker.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TAG = "localhost/tidal-example:1"
APPLETS = ("sh", "httpd", "id", "kill", "sleep", "cat")
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
PT_INTERP = 3


def is_static(path: Path) -> bool:
    """An ELF file without an interpreter (ld.so) runs in an empty image."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit ELF only
        return False
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    types = (struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum))
    return PT_INTERP not in types


def static_busybox() -> Path:
    for candidate in BUSYBOX_CANDIDATES:
        path = Path(candidate)
        if path.exists() and is_static(path):
            return path
    raise SystemExit("no static busybox found: apt-get install busybox-static")


def build(tag: str = TAG, engine: str = "podman") -> None:
    with tempfile.TemporaryDirectory(prefix="tidal-example-") as tmp:
        context = Path(tmp)
        rootfs = context / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        shutil.copy2(static_busybox(), rootfs / "bin" / "busybox")
        for applet in APPLETS:
            (rootfs / "bin" / applet).symlink_to("busybox")
        shutil.copy2(HERE / "server.sh", rootfs / "server.sh")
        shutil.copytree(HERE / "www", rootfs / "www")
        shutil.copy2(HERE / "Containerfile", context / "Containerfile")
        subprocess.run(
            [engine, "build", "--quiet", "--tag", tag, "--file", "Containerfile", "."],
            cwd=context,
            check=True,
            stdout=subprocess.DEVNULL,
        )


def content_tag(name: str = "localhost/tidal-example") -> str:
    """A tag that changes with the image's files, so a cached build is never stale."""
    digest = hashlib.sha256()
    for path in sorted([HERE / "Containerfile", HERE / "server.sh", *(HERE / "www").rglob("*")]):
        if path.is_file():
            digest.update(path.relative_to(HERE).as_posix().encode() + b"\0" + path.read_bytes())
    return f"{name}:{digest.hexdigest()[:12]}"


def ensure_image(engine: str = "podman") -> str:
    """The example image under its content tag, built only when the engine lacks it."""
    tag = content_tag()
    present = (
        subprocess.run(
            [engine, "image", "inspect", tag], capture_output=True, check=False
        ).returncode
        == 0
    )
    if not present:
        build(tag, engine)
    return tag


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="podman", choices=("podman", "docker"))
    parser.add_argument("--tag", default=TAG)
    options = parser.parse_args()
    build(options.tag, options.engine)
    print(options.tag)


if __name__ == "__main__":
    main()
