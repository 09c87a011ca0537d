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

That list cannot see everything cargo reads (a [[bench]] or [[test]] the manifest
declares, a build script it discovers), so the builder stage is also replayed without a
Docker engine: its COPY steps and the RUN commands that only make files (the stand-in
sources) are repeated in a scratch folder, and at each `cargo build` of the stage cargo
itself loads that folder (`cargo check`, same flags but the profile, offline, sharing the
repository's target directory so dependencies are not compiled again). Whatever the image
would lack then fails here as it would fail in `docker build`. After the last build, the
targets cargo finds there (library, binaries, build script) must be the repository's: a
build script or binary left out does not fail a build, it silently goes missing.

Exits 1 with one line per problem, 0 when all is well. Standard library only (and cargo).
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
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


# RUN commands the replay repeats: they only make, move or remove files in the build folder.
FILE_COMMANDS = {"mkdir", "touch", "echo", "printf", "rm", "cp", "mv", "ln", "cat", "tee", "true"}
# Target kinds `cargo build` builds; the replayed folder must end up with the repository's.
ERROR_LINE = re.compile(r"(^|: )error(\[E[0-9]+\])?:")
BUILT_KINDS = {"lib", "rlib", "dylib", "cdylib", "staticlib", "proc-macro", "bin", "custom-build"}


def shell_commands(run: str) -> list[str]:
    """A RUN line split into its simple commands at `&&` and `;` outside quotes."""
    if run.startswith("["):
        try:
            return [shlex.join(json.loads(run))]
        except (ValueError, TypeError):
            pass
    commands, current, quote, i = [], "", None, 0
    while i < len(run):
        c = run[i]
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif run.startswith("&&", i) or c == ";":
            commands.append(current.strip())
            current = ""
            i += 2 if c == "&" else 1
            continue
        current += c
        i += 1
    commands.append(current.strip())
    return [c for c in commands if c]


def stays_inside(words: list[str]) -> bool:
    """Whether a file command only touches relative paths below the build folder, so the
    replay can run it in the scratch folder. For echo and printf only the redirections
    are paths; their other words are text."""
    if words[0] in ("echo", "printf"):
        paths = []
        for i, word in enumerate(words):
            if word in (">", ">>") and i + 1 < len(words):
                paths.append(words[i + 1])
            elif word.startswith(">"):
                paths.append(word.lstrip(">"))
    else:
        paths = [w for w in words[1:] if not w.startswith("-")]
    return not any(p.startswith("/") or ".." in p.split("/") for p in paths)


def cargo_targets(folder: Path, env: dict[str, str]) -> tuple[set[tuple[str, str]], str]:
    """The (kind, name) targets cargo builds for the package in folder, or an error text."""
    done = subprocess.run(
        ["cargo", "metadata", "--no-deps", "--offline", "--format-version", "1"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return set(), done.stderr.strip()
    targets = set()
    for package in json.loads(done.stdout)["packages"]:
        for target in package["targets"]:
            for kind in set(target["kind"]) & BUILT_KINDS:
                targets.add((kind, target["name"]))
    return targets, ""


def cargo_errors(stderr: str) -> str:
    """cargo's and rustc's error lines (rustc's in the short format: `file:line:col: error`),
    each with the causes cargo lists under it."""
    keep = []
    causes = False
    for line in stderr.splitlines():
        if ERROR_LINE.search(line) and not line.startswith("error: could not compile"):
            keep.append(line.strip())
            causes = False
        elif line.strip() == "Caused by:":
            causes = True
        elif causes and line.strip():
            keep.append(line.strip())
    return ": ".join(keep[:8]) or stderr.strip()[-400:]


def replay_builder(repo: Path, builder, patterns: list[str], target_dir: Path) -> list[str]:
    """Replays the builder stage's file steps in a scratch folder; cargo judges each
    `cargo build`. target_dir (absolute) is the target directory cargo shares with the
    repository's own builds; the scratch folder is inside it, at a fixed place, so each
    run replaces the last one's artifacts instead of adding its own."""
    scratch = target_dir / "docker-replay"
    if shutil.which("cargo") is None:
        return ["replay: cargo is not on PATH, so the builder stage cannot be replayed"]
    problems: list[str] = []
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    # scratch stands for the stage's first WORKDIR, or for / if a step comes before one.
    root = None
    workdir = "/"

    def local(path: str) -> Path | None:
        """Where a path of the image lands in scratch; None outside the build folder."""
        full = posixpath.normpath(posixpath.join(workdir, path))
        base = root or "/"
        if not (full == base or full.startswith(base.rstrip("/") + "/")):
            return None
        return scratch / posixpath.relpath(full, base)

    env = dict(os.environ)
    env["CARGO_TARGET_DIR"] = str(target_dir)
    env["CARGO_TERM_COLOR"] = "never"
    builds = 0
    for word, args in builder:
        if word == "WORKDIR":
            workdir = posixpath.normpath(posixpath.join(workdir, args.strip()))
            root = root or workdir
            if local(".") is None:
                problems.append(f"replay: WORKDIR {args} leaves the first WORKDIR {root}")
                return problems
            local(".").mkdir(parents=True, exist_ok=True)
        elif word in ("COPY", "ADD"):
            parts = shlex.split(args)
            if any(p.startswith("--from") for p in parts):
                continue
            root = root or "/"
            parts = [p for p in parts if not p.startswith("--")]
            *sources, dest = parts
            target = local(dest)
            if target is None:
                problems.append(f"replay: COPY to {dest} outside the build folder is not replayed")
                continue
            into = dest.endswith("/") or len(sources) > 1
            for source in sources:
                for match in sorted(glob.glob(source, root_dir=repo)) or [source]:
                    copy_from_context(repo, match, target, into, patterns)
        elif word == "RUN":
            root = root or "/"
            for command in shell_commands(args):
                words = shlex.split(command)
                if words[:1] == ["cargo"] and "build" in words:
                    builds += 1
                    failed = cargo_check(local("."), words, env, builds)
                    if failed:
                        return problems + [failed]  # docker build stops here too
                elif words and words[0] in FILE_COMMANDS and stays_inside(words):
                    done = subprocess.run(
                        ["sh", "-c", command], cwd=local("."), capture_output=True, text=True
                    )
                    if done.returncode != 0:
                        problems.append(f"replay: RUN {command}: {done.stderr.strip()}")
    if builds == 0:
        problems.append("replay: the builder stage runs no `cargo build`")
        return problems
    # What the last build built against what the repository would build: a build script
    # or binary cargo discovers but the image lacks does not fail, it silently goes missing.
    want, error = cargo_targets(repo, env)
    have, error_here = cargo_targets(local("."), env)
    if error:
        problems.append(f"replay: cargo cannot read the repository's manifest: {error}")
    elif not error_here:
        for kind, name in sorted(want - have):
            problems.append(
                f"replay: the image builds without the {kind} target {name!r}: copy its files"
            )
    return problems


def copy_from_context(repo: Path, source: str, target: Path, into: bool, patterns: list[str]):
    """COPY's rules: a directory's contents go to target, a file to target or into it."""
    origin = repo / source
    if not origin.exists() or ignored(posixpath.normpath(source), patterns):
        return  # reported by the checks on COPY sources
    if origin.is_dir():
        for path in sorted(origin.rglob("*")):
            rel = path.relative_to(repo).as_posix()
            if path.is_file() and not ignored(rel, patterns):
                dest = target / path.relative_to(origin)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)
    else:
        dest = target / origin.name if into or target.is_dir() else target
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, dest)


def cargo_check(folder: Path, words: list[str], env, step: int) -> str | None:
    """`cargo check` in folder with the flags of the Dockerfile's `cargo build`.

    check reads what build reads (the manifest and every target it declares or
    discovers, the build script, each include and migration) without linking; the
    profile flag is dropped so the dependencies checked in the repository's own target
    directory are reused instead of compiled again for release.
    """
    flags = [w for w in words[words.index("build") + 1 :] if w not in ("--release", "-r")]
    command = ["cargo", "check", "--offline", "--message-format", "short", *flags]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    if done.returncode == 0:
        return None
    shown = " ".join(words)
    return f"replay: the builder stage's `{shown}` (number {step}) fails: {cargo_errors(done.stderr)}"


def main() -> int:
    repo = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parents[2]).resolve()
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
    if builder:
        target_dir = Path(os.environ.get("CARGO_TARGET_DIR", repo / "target")).resolve()
        problems += replay_builder(repo, builder, patterns, target_dir)

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
        f"Dockerfile: the builder copies all {len(needed_files(repo))} paths the build reads, "
        "cargo accepts each of its builds replayed; runtime settings agree"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
