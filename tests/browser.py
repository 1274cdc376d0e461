"""A real headless Chromium driven over the DevTools protocol, for the web page tests.

No driver library: Chromium's `--remote-debugging-pipe` speaks the DevTools
protocol as NUL-terminated JSON messages on file descriptors 3 (commands in)
and 4 (answers and events out), so a pipe pair and `json` are the whole
client. `Browser()` starts Chromium, opens one page, records every URL the page
requests (`requested_urls`, with `requested_methods`) and offers `goto`, `eval`,
`wait_for`, `click`, `click_at` and `screenshot`. `find_chromium()` says where
the browser is, or None.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The path of a Chromium/Chrome executable (`$CHROMIUM` first), or None."""
    given = os.environ.get("CHROMIUM")
    if given and shutil.which(given):
        return shutil.which(given)
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserError(RuntimeError):
    """A DevTools command failed, or the browser went away."""


class Browser:
    """Headless Chromium with one page; `close()` (or `with`) ends it."""

    def __init__(self, executable: str, *, width: int = 1200, height: int = 900) -> None:
        self.profile = tempfile.mkdtemp(prefix="af-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def fds() -> None:  # in the child: the pipes at the numbers Chromium expects
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        args = [
            executable, "--headless=new", "--remote-debugging-pipe", "--no-first-run",
            "--no-default-browser-check", "--disable-gpu", "--disable-extensions",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--mute-audio", f"--user-data-dir={self.profile}",
            f"--window-size={width},{height}", "about:blank",
        ]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self.proc = subprocess.Popen(
            # close_fds would close 3 and 4 after preexec_fn has put the pipes there.
            args, preexec_fn=fds, close_fds=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        os.set_inheritable(self._to_browser, False)
        os.set_inheritable(self._from_browser, False)
        self._next_id = 0
        self._lock = threading.Lock()
        self._answers: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self.requested_urls: list[str] = []
        self.requested_methods: list[str] = []
        self.console: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        self.send("Page.enable", session=True)
        self.send("Network.enable", session=True)
        self.send("Runtime.enable", session=True)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                  session=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._answers[-1] = {"error": {"message": "the browser went away"}}
                    self._cond.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._cond:
                        self._answers[msg["id"]] = msg
                        self._cond.notify_all()
                elif msg.get("method") == "Network.requestWillBeSent":
                    request = msg["params"]["request"]
                    self.requested_urls.append(request["url"])
                    self.requested_methods.append(request["method"])
                elif msg.get("method") == "Runtime.consoleAPICalled":
                    args = msg["params"].get("args", [])
                    self.console.append(" ".join(str(a.get("value", a.get("description")))
                                                 for a in args))
                elif msg.get("method") == "Runtime.exceptionThrown":
                    self.console.append("exception: " + json.dumps(msg["params"])[:500])

    def send(self, method: str, params: dict[str, Any] | None = None, *, session: bool = False,
             timeout_s: float = 30.0) -> dict[str, Any]:
        """Send one DevTools command (to the page's session when `session`); its result."""
        with self._lock:
            self._next_id += 1
            mid = self._next_id
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while mid not in self._answers:
                if -1 in self._answers:
                    raise BrowserError(self._answers[-1]["error"]["message"])
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrowserError(f"{method}: no answer within {timeout_s} s")
                self._cond.wait(left)
            answer = self._answers.pop(mid)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    def goto(self, url: str) -> None:
        """Navigate the page to `url` and wait until its document has loaded."""
        self.send("Page.navigate", {"url": url}, session=True)
        self.wait_for("document.readyState === 'complete'")

    def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited when a promise)."""
        out = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": True}, session=True)
        if "exceptionDetails" in out:
            raise BrowserError(f"{expression}: {out['exceptionDetails']}")
        return out["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 30.0) -> Any:
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                value = self.eval(expression)
            except BrowserError:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {expression!r}; console: "
                                     f"{self.console[-5:]}")
            time.sleep(0.05)

    def click_at(self, x: float, y: float) -> None:
        """A real mouse click at page coordinates (CSS pixels)."""
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y,
                                                   "button": "left", "clickCount": 1},
                      session=True)

    def click(self, selector: str) -> None:
        """A real mouse click at the centre of the element `selector`."""
        box = self.wait_for(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) "
            "return null; const r = e.getBoundingClientRect(); return r.width ? "
            "[r.left + r.width / 2, r.top + r.height / 2] : null; })()"
        )
        self.click_at(*box)

    def screenshot(self, path: Path) -> None:
        """Save the page (the whole document) as a PNG at `path`."""
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport":
                                                    True}, session=True)["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout_s=5)
        except (BrowserError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)
