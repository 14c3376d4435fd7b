"""Guard: the generic package names `hooks`, `analysis`, `app` must resolve to this repository."""
import re
from pathlib import Path

import analysis
import app
import hooks

REPO = Path(__file__).resolve().parents[1]


def test_imported_packages_live_in_this_repo():
    for pkg in (hooks, analysis, app):
        path = Path(pkg.__file__).resolve()
        assert path.parent.parent == REPO, f"{pkg.__name__} imported from {path}, not from {REPO}"


def test_analysis_imports_neither_hooks_nor_app():
    for src in (REPO / "analysis").rglob("*.py"):
        text = src.read_text()
        for banned in ("import hooks", "from hooks", "import app", "from app"):
            assert banned not in text, f"{src} contains {banned!r}: analysis must stay pure"


def test_hooks_never_imports_app_and_figures_never_import_streamlit():
    for src in (REPO / "hooks").rglob("*.py"):
        assert "from app" not in src.read_text() and "import app" not in src.read_text(), src
    figure_sources = [*(REPO / "app").glob("figures*.py"), *(REPO / "app" / "figures").rglob("*.py")]
    assert figure_sources, "no figure modules found: update this guard"
    for src in figure_sources:
        imports = re.findall(r"^\s*(?:import|from)\s+streamlit\b", src.read_text(), flags=re.M)
        assert not imports, f"{src} imports streamlit: figure code must not"
