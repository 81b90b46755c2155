"""Builds the amoCRM widget archive (`amosync widget build`).

The archive is what an amoCRM admin uploads to the integration: manifest.json, script.js,
i18n/ and images/ at the root of the zip (amoCRM looks for manifest.json there, not in a
folder). The service's base URL is written into script.js at build time, because the widget
runs on amoCRM's pages and has no other way to learn where the service is. The operator's
support contacts (`--support-email`, `--support-url`) go into the manifest's
`widget.support` (`{"link", "email"}`, amoCRM's manifest format), where amoCRM shows them,
and into script.js, whose panel shows them too. The archive is byte-for-byte reproducible:
fixed entry order, timestamps and permissions.
"""

from __future__ import annotations

import ipaddress
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import structlog
from email_validator import EmailNotValidError, validate_email

from amosync import __version__
from amosync.widget.logo import LOGO_SIZES, png_size

log = structlog.get_logger()

SOURCE_DIR = Path(__file__).parent / "src"
BACKEND_PLACEHOLDER = "__AMOSYNC_BACKEND_URL__"
VERSION_PLACEHOLDER = "__AMOSYNC_VERSION__"
SUPPORT_EMAIL_PLACEHOLDER = "__AMOSYNC_SUPPORT_EMAIL__"
SUPPORT_URL_PLACEHOLDER = "__AMOSYNC_SUPPORT_URL__"

# Files copied as they are; manifest.json and script.js get the placeholders filled in.
TEMPLATED = ("manifest.json", "script.js")
REQUIRED_LOCALES = ("ru", "en")
REQUIRED_IMAGES = {f"images/{name}": size for name, size in LOGO_SIZES.items()}
MAX_IMAGE_BYTES = 300 * 1024  # amoCRM's limit per logo file

# 1980-01-01 is the earliest time a zip entry can carry.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o100644 << 16
_URL_FORBIDDEN = re.compile(r"[\s\"'\\<>`]")


class WidgetBuildError(ValueError):
    """The widget cannot be built as asked (bad backend URL, broken sources)."""


@dataclass(frozen=True)
class ManifestProblem:
    """One way a widget's files break amoCRM's rules."""

    where: str
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


@dataclass(frozen=True)
class Support:
    """Where the widget's users get help: an address and, optionally, a web page."""

    email: str | None = None
    link: str | None = None

    def manifest(self) -> dict[str, str]:
        """The manifest's `widget.support` object (empty: no support section)."""
        return {key: value for key, value in (("link", self.link), ("email", self.email)) if value}


def support_contacts(email: str | None, url: str | None, backend_url: str) -> Support:
    """The support contacts, checked: a deliverable-looking address, an https page.

    The page must not be the service itself: its pages are the operator's dashboard,
    behind the admin token, and a widget user would land on its login.
    """
    address = None
    if email is not None:
        try:
            address = validate_email(email.strip(), check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise WidgetBuildError(f"support e-mail {email!r} is not an address: {exc}") from exc
    link = None
    if url is not None:
        # A help page may well have a query or an anchor; the rest is checked as for the
        # backend (absolute, https, no credentials, nothing that breaks out of a string).
        parts = urlsplit(url.strip())
        base = normalize_backend_url(
            parts._replace(query="", fragment="").geturl(), what="support URL"
        )
        link = urlsplit(base)._replace(query=parts.query, fragment=parts.fragment).geturl()
        if _URL_FORBIDDEN.search(link):
            raise WidgetBuildError(f"support URL {url!r} contains spaces or quotes")
        if _origin(link) == _origin(normalize_backend_url(backend_url)):
            raise WidgetBuildError(
                f"support URL {url!r} is the service itself, whose pages need the admin token; "
                "give a page of your own (or only --support-email)"
            )
    return Support(email=address, link=link)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def normalize_backend_url(url: str, *, what: str = "backend URL") -> str:
    """The service base URL as the widget uses it: checked, without a trailing slash.

    https is required because amoCRM pages are served over https and browsers block calls
    from them to plain http; loopback hosts are the exception browsers make (local testing).
    """
    candidate = url.strip()
    if not candidate or _URL_FORBIDDEN.search(candidate):
        raise WidgetBuildError(f"{what} {url!r} is empty or contains spaces or quotes")
    parts = urlsplit(candidate)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WidgetBuildError(
            f"{what} {url!r} must be an absolute http(s) URL, e.g. https://amosync.example.com"
        )
    if parts.query or parts.fragment:
        raise WidgetBuildError(f"{what} {url!r} must not have a query or a fragment")
    if parts.username or parts.password:
        raise WidgetBuildError(f"{what} must not contain credentials")
    try:
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError as error:
        raise WidgetBuildError(f"{what} {url!r} has an invalid port") from error
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise WidgetBuildError(
            f"{what} {url!r} uses http: amoCRM pages are https and browsers block calls "
            "from them to http hosts; use https (an ngrok or reverse-proxy URL)"
        )
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path}"


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def render_files(
    backend_url: str, source_dir: Path = SOURCE_DIR, *, support: Support | None = None
) -> dict[str, bytes]:
    """Every file of the widget by its archive path, placeholders filled in.

    Raises WidgetBuildError for a backend URL the widget could not call, or sources that
    break amoCRM's rules.
    """
    url = normalize_backend_url(backend_url)
    support = support or Support()
    # json.dumps()[1:-1] escapes a value for both a JSON and a JS string literal.
    values = {
        BACKEND_PLACEHOLDER: url,
        VERSION_PLACEHOLDER: __version__,
        SUPPORT_EMAIL_PLACEHOLDER: support.email or "",
        SUPPORT_URL_PLACEHOLDER: support.link or "",
    }
    files: dict[str, bytes] = {}
    for path in sorted(source_dir.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        name = path.relative_to(source_dir).as_posix()
        data = path.read_bytes()
        if name in TEMPLATED:
            text = data.decode("utf-8")
            if BACKEND_PLACEHOLDER not in text and name == "script.js":
                raise WidgetBuildError(f"{name} has no {BACKEND_PLACEHOLDER} placeholder")
            for placeholder, value in values.items():
                text = text.replace(placeholder, json.dumps(value)[1:-1])
            if name == "manifest.json":
                text = _with_support(text, support)
            data = text.encode("utf-8")
        files[name] = data
    problems = validate_widget(files)
    if problems:
        raise WidgetBuildError("widget sources are broken: " + "; ".join(map(str, problems)))
    return files


def _with_support(manifest: str, support: Support) -> str:
    """The manifest with `widget.support` set to the operator's contacts (or left out)."""
    try:
        data = json.loads(manifest)
    except json.JSONDecodeError:
        return manifest  # validate_widget() says what is wrong with it
    widget = data.get("widget") if isinstance(data, dict) else None
    if not isinstance(widget, dict):
        return manifest
    widget.pop("support", None)
    if support.manifest():
        widget["support"] = support.manifest()
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def build_widget(out: Path, backend_url: str, *, support: Support | None = None) -> Path:
    """Write the widget archive to `out` and return its path.

    Raises WidgetBuildError for a backend URL the widget could not call, or sources that
    break amoCRM's rules.
    """
    url = normalize_backend_url(backend_url)
    files = render_files(url, support=support)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed, so a failed build never leaves half an archive.
    partial = out.with_name(out.name + ".partial")
    try:
        with zipfile.ZipFile(partial, "w") as archive:
            for name in sorted(files):
                info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = _FILE_MODE
                info.create_system = 3  # unix, whatever machine builds it
                archive.writestr(info, files[name], compresslevel=9)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    log.info(
        "widget.built",
        path=str(out),
        files=len(files),
        backend_url=url,
        support=(support or Support()).manifest(),
    )
    return out


def main(
    out: Path, backend_url: str, support_email: str | None = None, support_url: str | None = None
) -> Path:
    """CLI entry: build the archive (errors surface as WidgetBuildError with a readable message)."""
    support = support_contacts(support_email, support_url, backend_url)
    return build_widget(out, backend_url, support=support)


# --- validation -------------------------------------------------------------------------


def validate_widget(files: dict[str, bytes]) -> list[ManifestProblem]:
    """Problems amoCRM would reject or show as broken; an empty list when the widget is fine.

    `files` maps archive paths to contents, as render_files() returns or as read from a zip.
    """
    problems: list[ManifestProblem] = []
    manifest = _load_json(files, "manifest.json", problems)
    if not isinstance(manifest, dict):
        if "manifest.json" in files and not problems:
            problems.append(ManifestProblem("manifest.json", "must be a JSON object"))
        return problems
    locales = _check_widget_block(manifest, problems)
    languages = {locale: _load_json(files, f"i18n/{locale}.json", problems) for locale in locales}
    for key in _i18n_keys(manifest):
        for locale, strings in languages.items():
            if isinstance(strings, dict) and not isinstance(_lookup(strings, key), str):
                problems.append(ManifestProblem(f"i18n/{locale}.json", f"missing text for {key!r}"))
    _check_support(manifest, problems)
    _check_locations(manifest, problems)
    _check_settings(manifest, problems)
    _check_images(files, problems)
    return problems


def _load_json(files: dict[str, bytes], name: str, problems: list[ManifestProblem]) -> object:
    if name not in files:
        problems.append(ManifestProblem(name, "missing"))
        return None
    data = files[name]
    if data.startswith(b"\xef\xbb\xbf"):
        problems.append(ManifestProblem(name, "must be UTF-8 without a BOM"))
    try:
        return json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        problems.append(ManifestProblem(name, f"not valid UTF-8 JSON ({error})"))
        return None


def _check_widget_block(manifest: dict[str, object], problems: list[ManifestProblem]) -> list[str]:
    widget = manifest.get("widget")
    if not isinstance(widget, dict):
        problems.append(ManifestProblem("manifest.json", "missing the 'widget' object"))
        return []
    for key in ("name", "description", "short_description", "version"):
        if not isinstance(widget.get(key), str) or not widget[key]:
            problems.append(
                ManifestProblem("manifest.json", f"widget.{key} must be a non-empty string")
            )
    if widget.get("interface_version") != 2:
        problems.append(ManifestProblem("manifest.json", "widget.interface_version must be 2"))
    for key in ("init_once", "installation"):
        if not isinstance(widget.get(key), bool):
            problems.append(ManifestProblem("manifest.json", f"widget.{key} must be true or false"))
    locale = widget.get("locale")
    if not isinstance(locale, list) or not all(isinstance(item, str) for item in locale):
        problems.append(ManifestProblem("manifest.json", "widget.locale must be a list of codes"))
        return []
    for required in REQUIRED_LOCALES:
        if required not in locale:
            problems.append(ManifestProblem("manifest.json", f"widget.locale lacks {required!r}"))
    return list(locale)


def _check_support(manifest: dict[str, object], problems: list[ManifestProblem]) -> None:
    widget = manifest.get("widget")
    support = widget.get("support") if isinstance(widget, dict) else None
    if support is None:
        return
    if not isinstance(support, dict) or not support:
        problems.append(ManifestProblem("manifest.json", "widget.support must be an object"))
        return
    for key, value in support.items():
        if key not in ("link", "email") or not isinstance(value, str) or not value:
            problems.append(
                ManifestProblem("manifest.json", f"widget.support.{key} is not a link or e-mail")
            )
    link = support.get("link")
    if isinstance(link, str) and not link.startswith(("https://", "http://")):
        problems.append(ManifestProblem("manifest.json", "widget.support.link must be a URL"))


def _i18n_keys(manifest: dict[str, object]) -> list[str]:
    """The manifest's texts that amoCRM looks up in i18n/ (names, descriptions, labels)."""
    keys: list[str] = []
    widget = manifest.get("widget")
    if isinstance(widget, dict):
        keys += [widget[k] for k in ("name", "description", "short_description") if k in widget]
    settings = manifest.get("settings")
    if isinstance(settings, dict):
        keys += [
            field["name"]
            for field in settings.values()
            if isinstance(field, dict) and "name" in field
        ]
    advanced = manifest.get("advanced")
    if isinstance(advanced, dict) and "title" in advanced:
        keys.append(advanced["title"])
    return [key for key in keys if isinstance(key, str)]


def _lookup(strings: dict[str, object], dotted: str) -> object:
    value: object = strings
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


_KNOWN_LOCATIONS = re.compile(
    r"^(?:(?:lcard|ccard|comcard|cucard|llist|clist|culist|tlist)(?:-[01])?|settings|advanced_settings"
    r"|card_sdk|catalogs|digital_pipeline|lead_sources|widget_page|sms|mobile_card"
    r"|salesbot_designer|website_chat_button|everywhere|ai_agent)$"
)


def _check_locations(manifest: dict[str, object], problems: list[ManifestProblem]) -> None:
    locations = manifest.get("locations")
    if not isinstance(locations, list) or not locations:
        problems.append(ManifestProblem("manifest.json", "locations must be a non-empty list"))
        return
    for location in locations:
        if not isinstance(location, str) or not _KNOWN_LOCATIONS.match(location):
            problems.append(ManifestProblem("manifest.json", f"unknown location {location!r}"))
    if "advanced_settings" in locations and not isinstance(manifest.get("advanced"), dict):
        problems.append(
            ManifestProblem("manifest.json", "location advanced_settings needs an 'advanced' title")
        )


_FIELD_TYPES = {"text", "pass", "users", "users_lp", "custom"}


def _check_settings(manifest: dict[str, object], problems: list[ManifestProblem]) -> None:
    settings = manifest.get("settings", {})
    if not isinstance(settings, dict):
        problems.append(ManifestProblem("manifest.json", "settings must be an object"))
        return
    for key, field in settings.items():
        if not isinstance(field, dict) or not isinstance(field.get("name"), str):
            problems.append(ManifestProblem("manifest.json", f"settings.{key} needs a name"))
        elif field.get("type") not in _FIELD_TYPES:
            problems.append(
                ManifestProblem(
                    "manifest.json", f"settings.{key} has unknown type {field.get('type')!r}"
                )
            )


def _check_images(files: dict[str, bytes], problems: list[ManifestProblem]) -> None:
    for name, expected in REQUIRED_IMAGES.items():
        data = files.get(name)
        if data is None:
            problems.append(ManifestProblem(name, "missing"))
            continue
        if len(data) > MAX_IMAGE_BYTES:
            problems.append(ManifestProblem(name, f"larger than {MAX_IMAGE_BYTES // 1024} KB"))
        try:
            size = png_size(data)
        except ValueError:
            problems.append(ManifestProblem(name, "not a PNG file"))
            continue
        if size != expected:
            problems.append(
                ManifestProblem(
                    name, f"is {size[0]}x{size[1]} px, amoCRM wants {expected[0]}x{expected[1]}"
                )
            )


def read_archive(path: Path) -> dict[str, bytes]:
    """The files of a built archive by name (for checks and tests)."""
    with zipfile.ZipFile(path) as archive:
        return {
            info.filename: archive.read(info) for info in archive.infolist() if not info.is_dir()
        }
