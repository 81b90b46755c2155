"""The amoCRM widget: its sources (`src/`), logo images (`logo.py`) and the archive builder
(`build.py`: `build_widget(out, backend_url)`)."""
