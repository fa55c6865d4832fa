"""A real headless browser for UI tests: Debian's Chromium (system-deps group ``kfpui``) driven
over the Chrome DevTools Protocol, the way Puppeteer and Playwright drive it, with what a UI
test needs and nothing more: open a page, read the text a user sees, click what a user clicks,
save a screenshot.

The browser runs with a throwaway profile and everything that would call out to the internet
(component updates, sync, metrics, first-run pages) switched off: it only ever loads the
loopback URLs a test gives it.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import httpx
import websocket  # websocket-client

from dex_testing.lifecycle import Started
from dexctl.polling import eventually
from dexctl.processes import Child

log = logging.getLogger(__name__)

CHROMIUM_NAMES = ("chromium", "chromium-browser")
FLAGS = (
    "--headless=new",
    # As root (the test machines run as root) Chromium's sandbox cannot start.
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--disable-extensions",
    "--metrics-recording-only",
    "--no-first-run",
    "--no-default-browser-check",
    "--window-size=1400,900",
    # Port 0: Chromium picks a free one and writes it to <profile>/DevToolsActivePort.
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


class MissingBrowserError(RuntimeError):
    """No Chromium on this machine."""


def find_chromium() -> Path:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    raise MissingBrowserError(
        "Chromium is needed for the UI tests (Debian `chromium`: `make kfp-ui` installs it)"
    )


class Browser(Started):
    """One headless Chromium with one page; a context manager."""

    def __init__(self, work: Path, *, timeout: float = 30.0) -> None:
        self.work = Path(work)
        self.timeout = timeout
        self.child: Child | None = None
        self._socket: websocket.WebSocket | None = None
        self._ids = itertools.count(1)
        self._profile: str | None = None

    def start(self) -> None:
        chromium = find_chromium()
        self.work.mkdir(parents=True, exist_ok=True)
        self._profile = tempfile.mkdtemp(prefix="chromium-", dir=self.work)
        self.child = Child(
            "chromium",
            [str(chromium), *FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
            log=self.work / "chromium.log",
            # Chromium's singleton socket folder goes in TMPDIR and outlives a stopped
            # browser; in the work folder, it goes with it.
            env={**os.environ, "TMPDIR": str(self.work)},
        )
        active = Path(self._profile) / "DevToolsActivePort"
        port = self.child.wait_ready(
            lambda: active.is_file() and active.read_text().split("\n", 1)[0].strip(),
            timeout=self.timeout,
            what="listening for DevTools",
        )
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
        page = next(t for t in targets if t["type"] == "page")
        self._socket = websocket.create_connection(
            page["webSocketDebuggerUrl"], timeout=self.timeout, suppress_origin=True
        )

    def stop(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self.child is not None:
            self.child.stop(grace=5.0)
            self.child = None
        if self._profile is not None:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None

    # --- DevTools protocol -----------------------------------------------------------------
    def _call(self, method: str, **params: Any) -> dict[str, Any]:
        if self._socket is None:
            raise RuntimeError("the browser is not started")
        call_id = next(self._ids)
        self._socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:  # events arrive between answers: skip them
            message = json.loads(self._socket.recv())
            if message.get("id") != call_id:
                continue
            if "error" in message:
                raise RuntimeError(f"{method}: {message['error']}")
            result: dict[str, Any] = message["result"]
            return result

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited if a promise)."""
        got = self._call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in got:
            raise RuntimeError(f"{expression[:80]}: {got['exceptionDetails']}")
        return got["result"].get("value")

    # --- what a user does ----------------------------------------------------------------
    def open(self, url: str) -> None:
        self._call("Page.navigate", url=url)

    def text(self) -> str:
        """The page's visible text, as a user reads it."""
        value = self.evaluate("document.body ? document.body.innerText : ''")
        return str(value or "")

    def wait_for_text(self, *needles: str, timeout: float | None = None) -> str:
        """Poll until every needle is in the visible text (the app loads data after the page)."""

        def shown() -> str | None:
            text = self.text()
            return text if all(n in text for n in needles) else None

        found = eventually(
            shown, timeout=timeout or self.timeout, interval=0.25, what=f"page shows {needles}"
        )
        assert found is not None  # eventually returns only a truthy value
        return found

    def click(self, label: str, selector: str = "button, [role=tab], a") -> None:
        """Click the first element matching ``selector`` whose visible text is ``label``."""
        clicked = self.evaluate(
            f"""(() => {{
              const el = [...document.querySelectorAll({json.dumps(selector)})]
                .find(e => e.innerText.trim() === {json.dumps(label)});
              if (!el) return false;
              el.click();
              return true;
            }})()"""
        )
        if not clicked:
            raise AssertionError(f"nothing labelled {label!r} to click ({selector})")

    def screenshot(self, path: Path) -> Path:
        shot = self._call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))
        return path
