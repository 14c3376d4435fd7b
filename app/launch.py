"""`attnscope app`: start the Streamlit dashboard with safe local settings.

The server settings live here, as command-line flags to ``streamlit run`` (flags override any
user or project ``config.toml``), so the app is safe however it is started through attnscope:

- binds 127.0.0.1 unless ``--address`` says otherwise (a warning is printed then);
- usage statistics off, XSRF protection on, CORS protection on, uploads <= ``MAX_UPLOAD_MB``;
- no file watcher (Streamlit's watcher walks imported modules and trips over torch);
- headless (no browser opened, no e-mail prompt); error details never shown in the page.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ENTRY_SCRIPT = Path(__file__).resolve().parent / "streamlit_app.py"
DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 8501
MAX_UPLOAD_MB = 20

__all__ = ["main", "streamlit_command", "server_flags", "ENTRY_SCRIPT", "MAX_UPLOAD_MB"]


def server_flags(*, address: str = DEFAULT_ADDRESS, port: int = DEFAULT_PORT) -> list[str]:
    """The ``streamlit run`` flags attnscope always passes (see the module docstring)."""
    settings = {
        "server.address": address,
        "server.port": str(port),
        "server.headless": "true",
        "server.enableXsrfProtection": "true",
        "server.enableCORS": "true",
        "server.maxUploadSize": str(MAX_UPLOAD_MB),
        "server.fileWatcherType": "none",
        "server.runOnSave": "false",
        "browser.gatherUsageStats": "false",
        "client.showErrorDetails": "none",
        "client.toolbarMode": "viewer",  # no developer menu; the "Running..." indicator stays
        "global.developmentMode": "false",
    }
    return [item for key, value in settings.items() for item in (f"--{key}", value)]


def streamlit_command(*, address: str = DEFAULT_ADDRESS, port: int = DEFAULT_PORT,
                      model: str | None = None) -> list[str]:
    """The full command line that starts the dashboard (used by `main` and the browser tests)."""
    cmd = [sys.executable, "-m", "streamlit", "run", str(ENTRY_SCRIPT),
           *server_flags(address=address, port=port)]
    if model:
        cmd += ["--", "--model", model]
    return cmd


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="attnscope app", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 8501)")
    parser.add_argument("--address", default=DEFAULT_ADDRESS,
                        help="interface to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--model", default=None,
                        help="model preselected in the app: a built-in name, HF id or local folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the dashboard in the foreground until Ctrl-C; returns Streamlit's exit status."""
    args = _parse(list(sys.argv[1:] if argv is None else argv))
    if not 0 < args.port < 65536:
        print(f"attnscope app: --port must be between 1 and 65535, got {args.port}", file=sys.stderr)
        return 2
    if args.address not in ("127.0.0.1", "localhost", "::1"):
        print(f"attnscope app: WARNING: listening on {args.address}; anyone who can reach this "
              "address can use the app and the models it loads.", file=sys.stderr)
    print(f"attnscope: dashboard on http://{args.address}:{args.port} (Ctrl-C stops it)")
    try:
        return subprocess.call(streamlit_command(address=args.address, port=args.port,
                                                 model=args.model))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
