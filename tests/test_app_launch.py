"""`attnscope app`: safe server settings, argument errors, and the entry script's import path."""
from __future__ import annotations

import subprocess
import sys

from app import launch


def _flags(cmd: list[str]) -> dict[str, str]:
    flags = cmd[cmd.index("run") + 2:]
    flags = flags[: flags.index("--")] if "--" in flags else flags
    return dict(zip(flags[::2], flags[1::2]))


def test_safe_defaults_are_always_passed():
    cmd = launch.streamlit_command()
    assert cmd[:4] == [sys.executable, "-m", "streamlit", "run"] and cmd[4] == str(launch.ENTRY_SCRIPT)
    flags = _flags(cmd)
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "8501"
    assert flags["--browser.gatherUsageStats"] == "false"
    assert flags["--server.enableXsrfProtection"] == "true" and flags["--server.enableCORS"] == "true"
    assert flags["--server.maxUploadSize"] == str(launch.MAX_UPLOAD_MB)
    assert flags["--server.fileWatcherType"] == "none" and flags["--server.headless"] == "true"
    assert flags["--client.showErrorDetails"] == "none"


def test_model_goes_to_the_script_and_streamlit_knows_every_flag():
    cmd = launch.streamlit_command(port=8600, model="shapes-vit")
    assert cmd[-3:] == ["--", "--model", "shapes-vit"] and _flags(cmd)["--server.port"] == "8600"
    help_text = subprocess.run([sys.executable, "-m", "streamlit", "run", "--help"], capture_output=True,
                               text=True, timeout=60).stdout
    unknown = [f for f in _flags(cmd) if f not in help_text]
    assert not unknown, f"streamlit does not know {unknown}"


def test_bad_port_is_one_clear_message(capsys):
    assert launch.main(["--port", "70000"]) == 2
    err = capsys.readouterr().err
    assert "--port must be between 1 and 65535" in err and "Traceback" not in err


def test_entry_script_puts_the_repo_root_first(tmp_path):
    """Run the entry script's path fix as `streamlit run` would: app/ first on sys.path."""
    code = (
        "import sys; sys.path.insert(0, {app!r});"
        "src = open({entry!r}).read().split('from app.ui.main')[0]; exec(src, {{'__file__': {entry!r}}});"
        "import app, hooks; print(sys.path[0]); print(app.__file__); print({app!r} in sys.path)"
    ).format(app=str(launch.ENTRY_SCRIPT.parent), entry=str(launch.ENTRY_SCRIPT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         timeout=60).stdout.split("\n")
    root = str(launch.ENTRY_SCRIPT.parent.parent)
    assert out[0] == root and out[1].startswith(root) and out[2] == "False"
