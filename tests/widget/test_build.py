"""The widget archive: what amoCRM needs at its root, valid texts and images, the backend URL
written in, and the same bytes on every build."""

from __future__ import annotations

import json
import logging
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from amosync.cli.main import app as cli
from amosync.widget.build import (
    SOURCE_DIR,
    Support,
    WidgetBuildError,
    build_widget,
    normalize_backend_url,
    read_archive,
    render_files,
    support_contacts,
    validate_widget,
)
from amosync.widget.logo import draw_logo, encode_png

BACKEND = "https://amosync.example.com/base"
EXPECTED_FILES = {
    "manifest.json",
    "script.js",
    "i18n/ru.json",
    "i18n/en.json",
    "images/logo_main.png",
    "images/logo_small.png",
    "images/logo.png",
    "images/logo_medium.png",
    "images/logo_min.png",
    "images/logo_dp.png",
}
# amoCRM's widget structure documentation: file → (width, height) in pixels.
EXPECTED_SIZES = {
    "images/logo_main.png": (400, 272),
    "images/logo_small.png": (108, 108),
    "images/logo.png": (130, 100),
    "images/logo_medium.png": (240, 84),
    "images/logo_min.png": (84, 84),
    "images/logo_dp.png": (174, 109),
}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_widget(tmp_path_factory.mktemp("build") / "widget.zip", BACKEND + "/")


@pytest.fixture(scope="module")
def files(archive: Path) -> dict[str, bytes]:
    return read_archive(archive)


@pytest.fixture
def kept_logging() -> Iterator[None]:
    """The CLI points structlog and the root logger at CliRunner's stream, closed once
    `invoke` returns: later tests (the browser tests' widget builds) would log into a closed
    file. Put back the configuration the rest of the suite logs through (as test_cli does)."""
    config = structlog.get_config()
    handlers = logging.root.handlers[:]
    yield
    structlog.configure(**config)
    logging.root.handlers[:] = handlers


def dotted(strings: dict[str, object], key: str) -> object:
    value: object = strings
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def test_archive_holds_the_widget_files_at_its_root(archive: Path) -> None:
    with zipfile.ZipFile(archive) as widget:
        names = widget.namelist()
        assert widget.testzip() is None
    assert set(names) == EXPECTED_FILES
    assert len(names) == len(set(names))


def test_manifest_is_what_amocrm_reads(files: dict[str, bytes]) -> None:
    manifest = json.loads(files["manifest.json"])
    widget = manifest["widget"]
    assert widget["interface_version"] == 2
    assert set(widget["locale"]) == {"ru", "en"}
    assert widget["installation"] is True
    assert widget["version"] == __import__("amosync").__version__
    # No support contacts asked for: no support section (never the service's own URL,
    # whose pages are the admin's dashboard).
    assert "support" not in widget
    assert "settings" in manifest["locations"]
    key_field = manifest["settings"]["unisender_key"]
    assert key_field["type"] == "pass"
    assert key_field["required"] is True


def test_every_manifest_text_exists_in_both_languages(files: dict[str, bytes]) -> None:
    manifest = json.loads(files["manifest.json"])
    keys = [manifest["widget"][k] for k in ("name", "description", "short_description")]
    keys += [field["name"] for field in manifest["settings"].values()]
    keys.append(manifest["advanced"]["title"])
    for locale in ("ru", "en"):
        strings = json.loads(files[f"i18n/{locale}.json"])
        for key in keys:
            text = dotted(strings, key)
            assert isinstance(text, str), f"i18n/{locale}.json lacks {key}"
            assert text.strip()


def test_images_have_the_sizes_amocrm_requires(files: dict[str, bytes]) -> None:
    for name, expected in EXPECTED_SIZES.items():
        data = files[name]
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        assert data[12:16] == b"IHDR", name
        assert struct.unpack(">II", data[16:24]) == expected, name
        assert len(data) <= 300 * 1024, name


def test_backend_url_is_written_into_the_script(files: dict[str, bytes]) -> None:
    script = files["script.js"].decode()
    assert f"var BACKEND_URL = '{BACKEND}';" in script
    assert "__AMOSYNC_" not in script
    assert "__AMOSYNC_" not in files["manifest.json"].decode()


def test_files_are_utf8_without_bom(files: dict[str, bytes]) -> None:
    for name in ("manifest.json", "script.js", "i18n/ru.json", "i18n/en.json"):
        assert not files[name].startswith(b"\xef\xbb\xbf"), name
        files[name].decode("utf-8")


def test_build_is_byte_for_byte_reproducible(archive: Path, tmp_path: Path) -> None:
    again = build_widget(tmp_path / "again.zip", BACKEND)
    assert again.read_bytes() == archive.read_bytes()
    with zipfile.ZipFile(again) as widget:
        for info in widget.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr >> 16 == 0o100644


def test_another_backend_gives_another_archive(archive: Path, tmp_path: Path) -> None:
    other = build_widget(tmp_path / "other.zip", "https://other.example.com")
    assert other.read_bytes() != archive.read_bytes()
    assert "'https://other.example.com'" in read_archive(other)["script.js"].decode()


def test_rebuilding_replaces_the_previous_archive(tmp_path: Path) -> None:
    out = tmp_path / "widget.zip"
    build_widget(out, "https://first.example.com")
    build_widget(out, "https://second.example.com")
    files = read_archive(out)
    assert set(files) == EXPECTED_FILES
    assert "'https://second.example.com'" in files["script.js"].decode()
    assert [path.name for path in tmp_path.iterdir()] == ["widget.zip"]


def test_build_creates_missing_folders(tmp_path: Path) -> None:
    out = build_widget(tmp_path / "dist" / "nested" / "widget.zip", BACKEND)
    assert out.is_file()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://amosync.example.com", "https://amosync.example.com"),
        ("https://amosync.example.com/", "https://amosync.example.com"),
        ("  https://abc123.ngrok-free.app/amosync//  ", "https://abc123.ngrok-free.app/amosync"),
        ("https://amosync.example.com:8443/", "https://amosync.example.com:8443"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_backend_url_is_normalized(given: str, expected: str) -> None:
    assert normalize_backend_url(given) == expected


@pytest.mark.parametrize(
    ("given", "complaint"),
    [
        ("", "empty"),
        ("amosync.example.com", "absolute"),
        ("ftp://amosync.example.com", "absolute"),
        ("http://amosync.example.com", "use https"),
        ("https://amosync.example.com/?x=1", "query"),
        ("https://amosync.example.com/#top", "fragment"),
        ("https://user:secret@amosync.example.com", "credentials"),
        ("https://amosync.example.com/a'b", "quotes"),
        ("https://amosync.example.com:99999", "port"),
    ],
)
def test_bad_backend_urls_are_refused(given: str, complaint: str, tmp_path: Path) -> None:
    with pytest.raises(WidgetBuildError, match=complaint):
        build_widget(tmp_path / "widget.zip", given)
    assert not (tmp_path / "widget.zip").exists()


def test_validation_accepts_the_shipped_widget() -> None:
    assert validate_widget(render_files(BACKEND)) == []


def _broken(change: str) -> dict[str, bytes]:
    files = render_files(BACKEND)
    manifest = json.loads(files["manifest.json"])
    english = json.loads(files["i18n/en.json"])
    if change == "missing_text":
        del english["settings"]["unisender_key"]
    elif change == "interface_version":
        manifest["widget"]["interface_version"] = 1
    elif change == "locale":
        manifest["widget"]["locale"] = ["en"]
    elif change == "location":
        manifest["locations"].append("somewhere")
    elif change == "field_type":
        manifest["settings"]["unisender_key"]["type"] = "password"
    elif change == "image_size":
        files["images/logo_min.png"] = encode_png(80, 80, draw_logo(80, 80))
    elif change == "image_missing":
        del files["images/logo_dp.png"]
    elif change == "bom":
        files["i18n/ru.json"] = b"\xef\xbb\xbf" + files["i18n/ru.json"]
        return files
    files["manifest.json"] = json.dumps(manifest).encode()
    files["i18n/en.json"] = json.dumps(english).encode()
    return files


@pytest.mark.parametrize(
    ("change", "where", "problem"),
    [
        ("missing_text", "i18n/en.json", "settings.unisender_key"),
        ("interface_version", "manifest.json", "interface_version"),
        ("locale", "manifest.json", "lacks 'ru'"),
        ("location", "manifest.json", "somewhere"),
        ("field_type", "manifest.json", "password"),
        ("image_size", "images/logo_min.png", "84x84"),
        ("image_missing", "images/logo_dp.png", "missing"),
        ("bom", "i18n/ru.json", "BOM"),
    ],
)
def test_validation_names_what_is_broken(change: str, where: str, problem: str) -> None:
    problems = validate_widget(_broken(change))
    assert any(p.where == where and problem in p.problem for p in problems), problems


def test_committed_logos_are_what_the_generator_draws() -> None:
    # The smallest two are enough to catch an edited drawing or encoder without slowing the suite.
    for name, (width, height) in (("logo_min.png", (84, 84)), ("logo_small.png", (108, 108))):
        committed = (SOURCE_DIR / "images" / name).read_bytes()
        assert committed == encode_png(width, height, draw_logo(width, height)), name


@pytest.mark.usefixtures("kept_logging")
def test_support_contacts_go_into_the_manifest_and_the_script(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "widget",
            "build",
            "--out",
            str(tmp_path / "widget.zip"),
            "--backend-url",
            BACKEND,
            "--support-email",
            " Help@Example.COM ",
            "--support-url",
            "https://help.example.com/amosync?from=widget#start",
        ],
    )
    assert result.exit_code == 0, result.output
    files = read_archive(tmp_path / "widget.zip")
    support = json.loads(files["manifest.json"])["widget"]["support"]
    # amoCRM's manifest format: widget.support {link, email}.
    assert support == {
        "link": "https://help.example.com/amosync?from=widget#start",
        "email": "Help@example.com",
    }
    script = files["script.js"].decode()
    assert "email: 'Help@example.com'" in script
    assert "link: 'https://help.example.com/amosync?from=widget#start'" in script
    assert validate_widget(files) == []


def test_an_email_alone_is_enough() -> None:
    support = support_contacts("help@example.com", None, BACKEND)
    files = render_files(BACKEND, support=support)
    assert json.loads(files["manifest.json"])["widget"]["support"] == {"email": "help@example.com"}
    assert "link: ''" in files["script.js"].decode()


@pytest.mark.parametrize(
    ("email", "url", "complaint"),
    [
        ("not an address", None, "not an address"),
        ("help@", None, "not an address"),
        (None, "help.example.com", "absolute"),
        (None, "http://help.example.com", "use https"),
        (None, "https://help.example.com/a'b", "quotes"),
        # The service's own pages need the admin token: a user would land on its login.
        (None, "https://amosync.example.com/", "the service itself"),
        (None, "https://amosync.example.com:443/login", "the service itself"),
    ],
)
def test_bad_support_contacts_are_refused(
    email: str | None, url: str | None, complaint: str
) -> None:
    with pytest.raises(WidgetBuildError, match=complaint):
        support_contacts(email, url, BACKEND)


@pytest.mark.usefixtures("kept_logging")
def test_the_cli_names_a_bad_support_address(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "widget",
            "build",
            "--out",
            str(tmp_path / "w.zip"),
            "--backend-url",
            BACKEND,
            "--support-email",
            "nobody",
        ],
    )
    assert result.exit_code == 2
    assert "support e-mail" in result.output
    assert not (tmp_path / "w.zip").exists()


def test_validation_refuses_a_broken_support_section() -> None:
    files = render_files(BACKEND, support=Support(email="help@example.com"))
    manifest = json.loads(files["manifest.json"])
    manifest["widget"]["support"] = {"link": "javascript:alert(1)", "phone": "+7"}
    files["manifest.json"] = json.dumps(manifest).encode()
    problems = [str(p) for p in validate_widget(files)]
    assert any("support.phone" in p for p in problems), problems
    assert any("support.link must be a URL" in p for p in problems), problems


@pytest.mark.usefixtures("kept_logging")
def test_the_cli_says_when_there_is_no_support_contact(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["widget", "build", "--out", str(tmp_path / "w.zip"), "--backend-url", BACKEND]
    )
    assert result.exit_code == 0, result.output
    assert "no --support-email" in result.output
    assert "support" not in json.loads(read_archive(tmp_path / "w.zip")["manifest.json"])["widget"]
