"""python -m bench [--quick] [--only SCENARIOS] [--servers LIST] [--no-nchan] [--deadline S]
[--out DIR]: measure how many waiting clients each server holds and how fast one event reaches
them, with Nchan (nginx) as the production reference. See docs/benchmarks.md."""

from __future__ import annotations

import argparse
import sys

from bench.runner import SCENARIOS, SERVERS, Options, run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true",
                   help="small sizes and short runs (a minute or two), for a first look")
    p.add_argument("--only", default=",".join(SCENARIOS), metavar="LIST",
                   help=f"comma-separated scenarios to run, from: {', '.join(SCENARIOS)}")
    p.add_argument("--no-nchan", dest="nchan", action="store_false",
                   help="leave out the Nchan (nginx) reference")
    p.add_argument("--servers", default="", metavar="LIST",
                   help=f"comma-separated servers to measure (default: all of "
                        f"{', '.join(SERVERS)})")
    p.add_argument("--deadline", type=float, default=840.0, metavar="S",
                   help="stop starting new measurements after S seconds (default 840)")
    p.add_argument("--out", default="results", metavar="DIR",
                   help="where bench-<date>.json and .md go (default results/)")
    args = p.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in only if name not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    servers = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = [name for name in servers if name not in SERVERS]
    if unknown:
        p.error(f"unknown server {', '.join(unknown)}; choose from {', '.join(SERVERS)}")
    return run(Options(quick=args.quick, only=only, nchan=args.nchan, servers=servers,
                       deadline_s=args.deadline, out=args.out))


if __name__ == "__main__":
    sys.exit(main())
