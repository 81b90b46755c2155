"""script.js as amoCRM loads it: valid JavaScript, an AMD module, and every text it shows
present in both languages."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from amosync.widget.build import render_files
from tests.widget.codes import problem_codes, service_codes

FILES = render_files("https://amosync.example.com")
SCRIPT = FILES["script.js"].decode()
LANGUAGES = {locale: json.loads(FILES[f"i18n/{locale}.json"]) for locale in ("ru", "en")}


def node() -> str:
    path = shutil.which("node")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("node is required to check script.js (apt-get install -y nodejs)")
        pytest.skip("node is not installed")
    return path


def leaves(strings: dict[str, object], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in strings.items():
        path = f"{prefix}{key}"
        keys |= leaves(value, path + ".") if isinstance(value, dict) else {path}
    return keys


def has_text(strings: dict[str, object], key: str) -> bool:
    value: object = strings
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return isinstance(value, str) and bool(value.strip())


def test_node_accepts_the_built_script(tmp_path: Path) -> None:
    script = tmp_path / "script.js"
    script.write_bytes(FILES["script.js"])
    result = subprocess.run(
        [node(), "--check", str(script)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr


def test_node_rejects_broken_javascript(tmp_path: Path) -> None:
    # Guards the check above: it must be able to fail.
    script = tmp_path / "script.js"
    script.write_text(SCRIPT.replace("return this;", "return this;;}", 1))
    result = subprocess.run([node(), "--check", str(script)], capture_output=True, timeout=30)
    assert result.returncode != 0


def test_script_is_an_amd_module_returning_the_widget_constructor(tmp_path: Path) -> None:
    script = tmp_path / "script.js"
    script.write_bytes(FILES["script.js"])
    probe = (
        "let captured;\n"
        "globalThis.define = (deps, factory) => { captured = { deps, factory }; };\n"
        f"require({json.dumps(str(script))});\n"
        "const Widget = captured.factory();\n"
        "const self = { i18n: () => undefined };\n"
        "Widget.call(self);\n"
        "const callbacks = Object.keys(self.callbacks);\n"
        "console.log(JSON.stringify({ deps: captured.deps, callbacks }));\n"
    )
    result = subprocess.run(
        [node(), "-e", probe], capture_output=True, text=True, timeout=30, check=True
    )
    shape = json.loads(result.stdout)
    assert shape["deps"] == []
    assert {"render", "init", "bind_actions", "settings", "onSave", "destroy"} <= set(
        shape["callbacks"]
    )
    assert "advancedSettings" in shape["callbacks"]


def test_both_languages_have_the_same_texts() -> None:
    assert leaves(LANGUAGES["ru"]) == leaves(LANGUAGES["en"])


def test_every_text_the_script_shows_is_translated() -> None:
    literal = set(re.findall(r"\b(?:t|lookup)\('([a-z_]+\.[a-z_.]+)'\)", SCRIPT))
    assert "panel.connected" in literal  # the pattern finds the script's lookups
    # Keys the script builds at run time: run states, counters and error codes it explains.
    built = {f"panel.sync_{status}" for status in ("queued", "running", "done", "failed")}
    built |= {f"panel.{name}" for name in ("fetched", "synced", "unsynced", "failed")}
    built |= {f"errors.{code}" for code in service_codes()} | {"errors.unknown"}
    built |= {f"problems.{code}" for code in problem_codes()}
    for locale, strings in LANGUAGES.items():
        missing = sorted(key for key in literal | built if not has_text(strings, key))
        assert missing == [], f"i18n/{locale}.json lacks {missing}"


def test_script_loads_nothing_from_outside() -> None:
    urls = re.findall(r"https?://[^\s'\"]+", SCRIPT)
    assert urls == ["https://amosync.example.com"]


def test_script_never_shows_the_services_detail() -> None:
    # The service's `detail` is English; the widget shows texts by code (errors.<code>).
    assert "detail" in SCRIPT  # it is read (kept in the rejection for debugging)
    assert ".detail" not in SCRIPT.replace("detail: payload && payload.detail", "")
