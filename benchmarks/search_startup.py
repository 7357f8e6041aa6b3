"""Where `retriever search` spends its start-up, step by step, in CPU seconds of a fresh process.

Steps, in the order the command takes them: the imports of the CLI, the retriever and the store
client; opening the retriever (settings, model folder, store); ``import torch``; ``import transformers``
and its XLM-R model class; loading the weights; the query itself (tokenize, encode, search). Then the
whole command once more as a user runs it, in a fresh process (its total CPU time), and the imports
above 0.1 s of ``python -X importtime``; and which engine clients the search imported (none on Qdrant Edge:
its requests are engine-neutral, ``indexer.requests``).

    .venv/bin/python benchmarks/search_startup.py --model MODEL_DIR --qdrant-path STORE [--query TEXT]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


CLIENT_MODULES = ("qdrant_client", "grpc", "httpx")


def steps(args: argparse.Namespace) -> dict[str, float]:
    """The steps of one search in this (fresh) process, CPU seconds each."""
    out: dict[str, float] = {}
    clock = time.process_time()

    def step(name: str) -> None:
        nonlocal clock
        now = time.process_time()
        out[name] = now - clock
        clock = now

    import retriever.api
    import retriever.cli  # noqa: F401
    from indexer.cliutil import settings_from_args

    step("imports: CLI, retriever, store client")
    parsed = retriever.cli.build_parser().parse_args(
        ["search", args.query, "--qdrant-path", args.qdrant_path, "--model", args.model]
    )
    settings = settings_from_args(parsed, {})
    r = retriever.api.Retriever(settings)
    step("retriever opened (settings, model folder, store)")
    import torch  # noqa: F401

    step("import torch")
    from indexer.encoder.forward import _import_backbone_class

    _import_backbone_class()
    step("import transformers and its XLM-R model")
    r.encoder.load()  # type: ignore[attr-defined]
    step("weights")
    r.search(args.query, limit=10)
    step("the query: tokenize, encode, search")
    r.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--qdrant-path", required=True)
    ap.add_argument("--query", default="terms of payment and delivery")
    ap.add_argument("--steps", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.steps:
        measured = steps(args)
        clients = sorted({m.split(".")[0] for m in sys.modules} & set(CLIENT_MODULES))
        print(json.dumps({"steps": measured, "clients": clients}))
        return
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    done = subprocess.run([sys.executable, __file__, "--steps", *sys.argv[1:]], capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for name, seconds in result["steps"].items():
        print(f"{name:<48} {seconds:6.2f} s CPU")
    print(f"engine clients imported by the search: {', '.join(result['clients']) or 'none'}")
    cmd = [sys.executable, "-X", "importtime", "-m", "retriever.cli", "search", args.query]
    cmd += ["--qdrant-path", args.qdrant_path, "--model", args.model]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    print(f"`retriever search` in a fresh process: {cpu:.2f} s CPU, {wall:.2f} s wall (with -X importtime)")
    print("top-level imports over 0.1 s (cumulative, wall, from -X importtime):")
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line[len("import time:") :].split("|")
            top = name.startswith(" ") and not name.startswith("  ")  # nested imports are indented further
            if cumulative.strip().isdigit() and int(cumulative) > 100_000 and top:
                print(f"  {name.strip():<40} {int(cumulative) / 1e6:6.2f} s")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
