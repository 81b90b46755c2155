"""The browser, the running service (amosync serve against amosync sandbox) and the stand
the widget's browser tests share; one of each per test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import chromium_sync
from tests.widget.servers import Service, running_service
from tests.widget.stand import DESKTOP, GOOD_KEY, LOCAL_NETWORK_ALLOWED, Page, stand_folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium_sync(LOCAL_NETWORK_ALLOWED) as launched:
        yield launched


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("service")) as running:
        running.add_key(GOOD_KEY)
        yield running


@pytest.fixture(scope="module")
def stand(tmp_path_factory: pytest.TempPathFactory, service: Service) -> Path:
    """The stand page with the widget built for the running service's URL."""
    return stand_folder(tmp_path_factory.mktemp("stand") / "site", service.url)


@pytest.fixture
def tab(browser: Any, stand: Path) -> Iterator[Any]:
    tabs: list[Page] = []

    def open_tab(viewport: dict[str, int] = DESKTOP) -> Page:
        tabs.append(Page(browser, stand, viewport))
        return tabs[-1]

    yield open_tab
    for opened in tabs:
        opened.close()
