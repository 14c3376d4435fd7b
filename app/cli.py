"""`attnscope` command line: dispatches subcommands to their modules (imported lazily)."""
from __future__ import annotations

import sys
from pathlib import Path

SUBCOMMANDS = {
    "app": ("app.launch", "main", "launch the dashboard on http://127.0.0.1:8501"),
    "export": ("app.cli_export", "export_main", "write figures and a report bundle headless"),
    "inspect": ("app.cli_export", "inspect_main", "print a terminal summary of a model's attention"),
    "bench": ("benchmarks.run", "main", "run the benchmark suite and print ratios"),
    "demo": ("hooks.demo", "main", "capture attention from a tiny model and print a summary"),
}


def _usage() -> str:
    lines = ["usage: attnscope COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<8} {desc}" for name, (_, _, desc) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"attnscope: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name, _ = SUBCOMMANDS[name]
    import importlib

    if module_name.startswith("benchmarks."):  # not an installed package: it lives next to app/ in the checkout
        root = Path(__file__).resolve().parents[1]
        if not (root / "benchmarks" / "run.py").is_file():
            print(f"attnscope {name}: needs the source checkout (benchmarks/run.py next to app/)", file=sys.stderr)
            return 2
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
