#!/usr/bin/env python3
"""Checks the Dockerfile against the crate, without a Docker engine.

    check.py [REPO]

The image is built from a few copied paths, not the whole tree, so the build breaks the
day the crate starts reading a file from elsewhere at compile time (an include_str! of a
new directory, say) and nobody notices until an image is built. This script finds every
file the build needs (Cargo.toml, Cargo.lock, build.rs, the lib and bin roots, each
include_str!/include_bytes! and sqlx::migrate! path) and checks that the builder stage
copies it and .dockerignore keeps it in the context. It also checks that the runtime
stage's port, volume and user agree with the config baked into the image.

Exits 1 with one line per problem, 0 when all is well. Standard library only.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import shlex
import sys
import tomllib
from pathlib import Path

INCLUDE = re.compile(r'\binclude_(?:str|bytes)!\s*\(\s*"([^"]+)"\s*\)')
MIGRATE = re.compile(r'\bsqlx::migrate!\s*\(\s*(?:"([^"]*)")?\s*\)')


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages(steps):
    """{stage name or index: [(instruction, args)]} in order."""
    result: dict[str, list[tuple[str, str]]] = {}
    current = None
    for word, args in steps:
        if word == "FROM":
            parts = args.split()
            name = parts[-1] if len(parts) >= 3 and parts[-2].upper() == "AS" else str(len(result))
            current = result.setdefault(name, [])
        elif current is not None:
            current.append((word, args))
    return result


def copy_sources(stage) -> list[str]:
    """Sources of the stage's COPY/ADD from the build context (not --from another stage)."""
    sources = []
    for word, args in stage:
        if word not in ("COPY", "ADD"):
            continue
        parts = shlex.split(args)
        if any(p.startswith("--from") for p in parts):
            continue
        parts = [p for p in parts if not p.startswith("--")]
        sources.extend(posixpath.normpath(p.rstrip("/")) for p in parts[:-1])
    return sources


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore drops path (or a directory above it) from the context."""
    result = False
    candidates = [path] + [str(p) for p in Path(path).parents if str(p) != "."]
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = posixpath.normpath(raw[1:] if negate else raw).rstrip("/")
        for candidate in candidates:
            if fnmatch.fnmatchcase(candidate, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatchcase(Path(candidate).name, pattern[3:])
            ):
                result = not negate
                break
    return result


def needed_files(repo: Path) -> dict[str, str]:
    """{path relative to repo: why the build reads it}."""
    needed = {"Cargo.toml": "the manifest", "Cargo.lock": "--locked"}
    manifest = tomllib.loads((repo / "Cargo.toml").read_text())
    package = manifest.get("package", {})
    build = package.get("build", "build.rs" if (repo / "build.rs").exists() else None)
    if build:
        needed[build] = "the build script"
    lib = manifest.get("lib", {}).get(
        "path", "src/lib.rs" if (repo / "src/lib.rs").exists() else None
    )
    if lib:
        needed[lib] = "the library root"
    for binary in manifest.get("bin", []):
        needed[binary.get("path", f"src/bin/{binary.get('name')}.rs")] = (
            f"the {binary.get('name')} binary"
        )
    for rs in sorted((repo / "src").rglob("*.rs")):
        text = rs.read_text(errors="replace")
        rel_dir = rs.parent.relative_to(repo)
        for m in INCLUDE.finditer(text):
            target = posixpath.normpath(posixpath.join(str(rel_dir), m.group(1)))
            needed[target] = f"{m.group(0)} in {rs.relative_to(repo)}"
        for m in MIGRATE.finditer(text):
            target = posixpath.normpath(m.group(1) or "migrations")
            needed[target] = f"{m.group(0)} in {rs.relative_to(repo)}"
    return needed


def covered(path: str, sources: list[str]) -> bool:
    return any(path == s or path.startswith(s + "/") or s == "." for s in sources)


def main() -> int:
    repo = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2])
    problems: list[str] = []
    steps = instructions((repo / "Dockerfile").read_text())
    by_stage = stages(steps)
    if len(by_stage) < 2:
        problems.append("Dockerfile: expected a builder stage and a runtime stage")
        builder, runtime = [], []
    else:
        builder = by_stage.get("builder", next(iter(by_stage.values())))
        runtime = list(by_stage.values())[-1]
    dockerignore = repo / ".dockerignore"
    patterns = [
        line.strip()
        for line in (dockerignore.read_text().splitlines() if dockerignore.exists() else [])
        if line.strip() and not line.strip().startswith("#")
    ]

    sources = copy_sources(builder)
    for path, why in sorted(needed_files(repo).items()):
        if not (repo / path).exists():
            problems.append(f"{path} ({why}) does not exist")
        if not covered(path, sources):
            problems.append(f"{path} ({why}) is not copied into the builder stage")
        if ignored(path, patterns):
            problems.append(f"{path} ({why}) is excluded by .dockerignore")
    for stage in by_stage.values():
        for source in copy_sources(stage):
            if not (repo / source).exists():
                problems.append(f"COPY {source}: not in the repository")
            elif ignored(source, patterns):
                problems.append(f"COPY {source}: excluded by .dockerignore")
    for must in ("target", ".git"):
        if not ignored(must, patterns):
            problems.append(f".dockerignore should exclude {must}")

    # The runtime stage's settings against the config it bakes in.
    env = {}
    exposed, volumes, user, baked = set(), [], None, None
    for word, args in runtime:
        if word == "ENV":
            for part in shlex.split(args):
                key, _, value = part.partition("=")
                env[key] = value
        elif word == "EXPOSE":
            exposed |= {p.split("/")[0] for p in args.split()}
        elif word == "VOLUME":
            volumes += re.findall(r'"([^"]+)"', args) or args.split()
        elif word == "USER":
            user = args
        elif word == "COPY" and args.rstrip().endswith("/etc/cronbyte/cronbyte.toml"):
            baked = repo / shlex.split(args)[-2]
    listen = env.get("CRONBYTE__SERVER__LISTEN", "")
    if not listen.startswith("0.0.0.0:"):
        problems.append("runtime: CRONBYTE__SERVER__LISTEN must listen on 0.0.0.0 in a container")
    if listen.rpartition(":")[2] not in exposed:
        problems.append(
            f"runtime: EXPOSE {sorted(exposed)} does not include the listen port of {listen!r}"
        )
    if not user or not re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", user):
        problems.append(
            f"runtime: USER {user!r} must be a numeric non-root uid, so runAsNonRoot can verify it"
        )
    if baked is None or not baked.exists():
        problems.append("runtime: no config is copied to /etc/cronbyte/cronbyte.toml")
    else:
        store = tomllib.loads(baked.read_text()).get("store", {}).get("path", "")
        if not any(store.startswith(v.rstrip("/") + "/") for v in volumes):
            problems.append(f"runtime: the baked store.path {store!r} is not on a VOLUME {volumes}")

    if problems:
        for p in problems:
            print(f"FAIL {p}")
        return 1
    print(
        f"Dockerfile: the builder copies all {len(needed_files(repo))} paths the build reads; runtime settings agree"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
