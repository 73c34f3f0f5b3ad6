"""The web UI's files served at `/`: the app for its own routes, lasting caches for hashed assets, and never in
the way of the API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Bifrost, fresh_database, running_bifrost

INDEX = "<!doctype html><title>Bifrost</title><script type=module src=/assets/index-Abc123.js></script>"
SCRIPT = "console.log('bifrost')"


@pytest.fixture(scope="module")
def bifrost(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Bifrost]:
    tmp = tmp_path_factory.mktemp("web-ui")
    ui_dir = tmp / "dist"
    (ui_dir / "assets").mkdir(parents=True)
    (ui_dir / "index.html").write_text(INDEX)
    (ui_dir / "assets" / "index-Abc123.js").write_text(SCRIPT)
    (ui_dir / "favicon.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    with running_bifrost(tmp, fresh_database("sqlite", tmp, request), {}, ui_dir=ui_dir) as running:
        yield running


@pytest.fixture
def browser(bifrost: Bifrost) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=bifrost.url, timeout=60) as client:
        yield client


def test_the_app_is_served_at_the_root_and_revalidated(browser: httpx.Client) -> None:
    page = browser.get("/")
    assert page.status_code == 200
    assert page.text == INDEX
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    again = browser.get("/", headers={"If-None-Match": page.headers["etag"]})
    assert again.status_code == 304


@pytest.mark.parametrize("path", ["/workflows", "/executions/0b9d5c1e-4d1f-4f57-9d62-3b1e6c0f9a10", "/workflows/a.b"])
def test_the_apps_own_routes_load_the_app(browser: httpx.Client, path: str) -> None:
    page = browser.get(path)
    assert page.status_code == 200
    assert page.text == INDEX
    assert page.headers["cache-control"] == "no-cache"


def test_hashed_assets_are_cached_for_good_and_missing_ones_are_not_the_app(browser: httpx.Client) -> None:
    script = browser.get("/assets/index-Abc123.js")
    assert script.status_code == 200
    assert script.text == SCRIPT
    assert script.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert script.headers["x-content-type-options"] == "nosniff"
    assert "javascript" in script.headers["content-type"]
    assert browser.get("/assets/index-Old999.js").status_code == 404
    icon = browser.get("/favicon.svg")
    assert (icon.status_code, icon.headers["cache-control"]) == (200, "no-cache")


def test_files_outside_the_build_are_not_served(browser: httpx.Client, bifrost: Bifrost) -> None:
    secret = bifrost.settings.ui_dir.parent / "outside.txt"
    secret.write_text("not for browsers")
    for path in ("/../outside.txt", "/assets/../../outside.txt", "/%2e%2e/outside.txt"):
        assert "not for browsers" not in browser.get(path).text


def test_the_api_and_the_server_pages_are_never_the_app(browser: httpx.Client) -> None:
    unknown = browser.get("/api/nowhere")
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "Not Found"})
    assert browser.get("/api/workflows").status_code == 401
    assert browser.get("/healthz").json() == {"status": "ok"}
    assert browser.get("/healthz/more").status_code == 404
    assert browser.get("/docs/nowhere").status_code == 404
    assert "Sign in" in browser.get("/login").text
    assert browser.delete("/api/workflows").status_code == 405
    assert browser.post("/workflows").status_code == 404


def test_without_a_build_the_root_says_how_to_build_it(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    missing = tmp_path / "no-build"
    database_url = fresh_database("sqlite", tmp_path, request)
    with (
        running_bifrost(tmp_path, database_url, {}, ui_dir=missing) as bifrost,
        httpx.Client(base_url=bifrost.url, timeout=60) as browser,
    ):
        for path in ("/", "/executions"):
            page = browser.get(path)
            assert page.status_code == 404
            assert "make ui" in page.text
            assert str(missing) in page.text
        assert browser.get("/healthz").status_code == 200
