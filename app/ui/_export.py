"""Export panel: every figure on screen as PNG/SVG/PDF/HTML (+ CSV for matrices), all captured
maps as NPZ, and the ZIP report bundle. Files are rendered on the server only when a download
button is clicked (deferred `data=` callables), so reruns stay fast."""
from __future__ import annotations

import streamlit as st

from app import export, pipeline

BUNDLE_FORMATS = ("png", "svg", "pdf", "csv")
"""Figure files in the ZIP (interactive HTML embeds 4.6 MB of plotly.js each: download it singly)."""
MIME = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf", "html": "text/html",
        "csv": "text/csv", "npz": "application/octet-stream", "zip": "application/zip"}


def _file_maker(prepared, fmt: str):
    return lambda: export.figure_file(prepared, fmt, scale=2)


def export_panel(run, settings: dict, prepared: dict, runs=()) -> None:
    """Download buttons for the figures in `prepared` ({name: prepared figure}) and the run
    (`runs`: every input given, recorded in report.json)."""
    plain = {k: v for k, v in settings.items() if k != "section"}
    plain["section"] = settings["section"].title
    base = export.safe_filename(f"{run.model_id}-{run.name}")
    if not prepared:
        st.caption("This view shows no figure to export.")
    for name, p in prepared.items():
        fmts = export.figure_formats(p)
        cols = st.columns(len(fmts) + 1)
        cols[0].markdown(f"**{name}**")
        for col, fmt in zip(cols[1:], fmts):
            fname = export.safe_filename(f"{base}-{name}") + f".{fmt}"
            col.download_button(fmt.upper(), data=_file_maker(p, fmt), file_name=fname,
                                mime=MIME[fmt], key=f"dl_{name}_{fmt}", on_click="ignore")
    c1, c2 = st.columns(2)
    c1.download_button("All captured maps (NPZ)", data=lambda: export.maps_npz(pipeline.export_maps(run)),
                       file_name=f"{base}-attention.npz", mime=MIME["npz"], key="dl_npz",
                       on_click="ignore")
    c2.download_button(
        "Report bundle (ZIP)",
        data=lambda: export.report_bundle(prepared, pipeline.build_report(run, settings=plain, runs=runs),
                                          formats=BUNDLE_FORMATS, maps=pipeline.export_maps(run)),
        file_name=f"{base}-report.zip", mime=MIME["zip"], key="dl_zip", on_click="ignore")
