#!/usr/bin/env python3
"""Writes a one-layer OCI image archive from files on disk, without a registry or a daemon.

    hack/oci-image.py OUT.tar NAME:TAG --user 65532:65532 --entrypoint /probe [--cmd ARG]...
        [--port 8080/tcp] [--env K=V]... FILE=/path/in/image [FILE=/path]...

The archive is deterministic (owner 0, mtime 0, sorted entries), so the same inputs give the
same digests, and `ctr images import` takes it as NAME:TAG (the containerd name annotation).
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile


def _info(name, mode, size=0, kind=tarfile.REGTYPE):
    ti = tarfile.TarInfo(name)
    ti.mode, ti.size, ti.type = mode, size, kind
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.mtime = 0
    return ti


def layer(files):
    """An uncompressed tar of `files` ({path in image: path on disk}) with their parent dirs."""
    dirs = set()
    for target in files:
        parts = target.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in sorted(dirs):
            tar.addfile(_info(d + "/", 0o755, kind=tarfile.DIRTYPE))
        for target in sorted(files):
            src = files[target]
            with open(src, "rb") as f:
                data = f.read()
            mode = 0o755 if os.access(src, os.X_OK) else 0o644
            tar.addfile(_info(target.strip("/"), mode, len(data)), io.BytesIO(data))
    return buf.getvalue()


def blob(out, data):
    digest = hashlib.sha256(data).hexdigest()
    out.append((f"blobs/sha256/{digest}", data))
    return {"digest": f"sha256:{digest}", "size": len(data)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("ref", help="NAME:TAG, e.g. localhost/zhengyun/pause:0.1.0")
    p.add_argument("files", nargs="+", help="SRC=/path/in/image")
    p.add_argument("--user", default="65532:65532")
    p.add_argument("--entrypoint", action="append", default=[])
    p.add_argument("--cmd", action="append", default=[])
    p.add_argument("--port", action="append", default=[])
    p.add_argument("--env", action="append", default=["PATH=/"])
    a = p.parse_args()

    files = {}
    for spec in a.files:
        src, sep, target = spec.partition("=")
        if not sep or not target.startswith("/"):
            sys.exit(f"oci-image: {spec!r}: want SRC=/path/in/image")
        files[target] = src
    name, _, tag = a.ref.rpartition(":")
    if not name or not tag or "/" in tag:
        sys.exit(f"oci-image: {a.ref!r}: want NAME:TAG")

    blobs = []
    raw = layer(files)
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0) as g:
        g.write(raw)
    layer_desc = blob(blobs, gz.getvalue())
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": a.user,
            "Env": a.env,
            "Entrypoint": a.entrypoint or None,
            "Cmd": a.cmd or None,
            "ExposedPorts": {port: {} for port in a.port} or None,
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
    }
    config["config"] = {k: v for k, v in config["config"].items() if v is not None}
    config_desc = blob(blobs, json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer_desc}],
    }
    manifest_desc = blob(blobs, json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **manifest_desc,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"io.containerd.image.name": a.ref, "org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    entries = [("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())]
    entries += [("index.json", json.dumps(index, sort_keys=True).encode())]
    entries += sorted(set(blobs))
    tmp = a.out + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("blobs/", "blobs/sha256/"):
            tar.addfile(_info(d, 0o755, kind=tarfile.DIRTYPE))
        for path, data in entries:
            tar.addfile(_info(path, 0o644, len(data)), io.BytesIO(data))
    os.replace(tmp, a.out)
    print(manifest_desc["digest"])


if __name__ == "__main__":
    main()
