"""Streamlit entry script of the attnscope dashboard (`attnscope app` runs it).

`streamlit run app/streamlit_app.py` puts this script's folder (`app/`) first on sys.path; the
generic module names in that folder (inputs, figures, export, ...) must not shadow anything,
and `import app` / `import hooks` must resolve to this repository. So: drop `app/` from the
path and put the repository root first, then hand over to `app.ui.main`.
"""
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from app.ui.main import render  # noqa: E402

render()
