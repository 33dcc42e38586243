"""A tiny Chrome DevTools Protocol client for headless Chromium (stdlib only).

Talks to Chromium over --remote-debugging-pipe (the browser reads JSON
messages from fd 3 and writes replies to fd 4, each message ended by a NUL
byte), so no port and no websocket are needed.

    with Chromium() as br:
        br.open("file:///tmp/report.html")
        br.eval("document.title")
        br.click(100, 200)
        br.screenshot("/tmp/shot.png")

Used by report_browser_test.py.  Needs the Debian package "chromium".
"""

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
    "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-extensions",
    "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
    "--no-default-browser-check", "--disable-dev-shm-usage",
    "--remote-debugging-pipe",
]


class CDPError(RuntimeError):
    pass


class Chromium:
    def __init__(self, binary=CHROMIUM, width=1400, height=1000, timeout=30.0):
        self.timeout = timeout
        self.width, self.height = width, height
        self.profile = tempfile.mkdtemp(prefix="statsprof-chromium-")
        # pipe fds >= 10 so that dup2 onto 3 and 4 in the child never
        # collides with them
        r_in, w_in = os.pipe()
        r_out, w_out = os.pipe()
        fds = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
               for fd in (r_in, w_in, r_out, w_out)]
        for fd in (r_in, w_in, r_out, w_out):
            os.close(fd)
        child_r, self._w, self._r, child_w = fds

        def setup():
            os.dup2(child_r, 3)
            os.dup2(child_w, 4)

        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [binary] + FLAGS + ["--user-data-dir=" + self.profile,
                                "--window-size=%d,%d" % (width, height),
                                "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=self.stderr, pass_fds=(3, 4), preexec_fn=setup)
        os.close(child_r)
        os.close(child_w)
        self._next_id = 0
        self._replies = {}
        self._events = queue.Queue()
        self._cond = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        self.session = None
        self._attach()

    # -- transport ---------------------------------------------------------

    def _read_loop(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self._r, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._closed = True
                    self._cond.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw.decode("utf-8"))
                if "id" in msg:
                    with self._cond:
                        self._replies[msg["id"]] = msg
                        self._cond.notify_all()
                else:
                    self._events.put(msg)

    def send(self, method, params=None, session=True, timeout=None):
        """Send a command and return its result (raises CDPError)."""
        self._next_id += 1
        mid = self._next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        data = json.dumps(msg).encode("utf-8") + b"\0"
        os.write(self._w, data)
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._cond:
            while mid not in self._replies:
                left = deadline - time.monotonic()
                if self._closed:
                    raise CDPError("chromium exited while waiting for %s: %s"
                                   % (method, self.log_tail()))
                if left <= 0:
                    raise CDPError("timeout waiting for %s" % method)
                self._cond.wait(left)
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise CDPError("%s: %s" % (method, reply["error"]))
        return reply.get("result", {})

    def wait_event(self, name, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CDPError("timeout waiting for event %s" % name)
            try:
                ev = self._events.get(timeout=left)
            except queue.Empty:
                continue
            if ev.get("method") == name:
                return ev.get("params", {})

    def _drain_events(self):
        while True:
            try:
                self._events.get_nowait()
            except queue.Empty:
                return

    def log_tail(self):
        try:
            self.stderr.seek(0)
            return self.stderr.read().decode("utf-8", "replace")[-2000:]
        except (OSError, ValueError):
            return ""

    # -- page --------------------------------------------------------------

    def _attach(self):
        target = self.send("Target.createTarget", {"url": "about:blank"},
                           session=False)["targetId"]
        self.session = self.send("Target.attachToTarget",
                                 {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.set_viewport(self.width, self.height)

    def set_viewport(self, width, height):
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1,
                   "mobile": False})

    def open(self, url):
        self._drain_events()
        self.send("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")

    def eval(self, expression):
        """Evaluate JS in the page; returns the value (JSON-able)."""
        r = self.send("Runtime.evaluate", {"expression": expression,
                                           "returnByValue": True,
                                           "awaitPromise": True})
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            text = d.get("exception", {}).get("description") or d.get("text")
            raise CDPError("JS error: %s" % text)
        return r.get("result", {}).get("value")

    def click(self, x, y):
        """A real left click (mouse move, press, release) at page (x, y)."""
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            p = {"type": kind, "x": x, "y": y}
            if kind != "mouseMoved":
                p.update(button="left", clickCount=1)
            self.send("Input.dispatchMouseEvent", p)

    def click_element(self, selector):
        """Scroll ``selector`` into view and click the centre of its box."""
        box = self.eval(
            "(() => { const e = document.querySelector(%s); if (!e) return null;"
            " e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
            % json.dumps(selector))
        if box is None:
            raise CDPError("no element %s" % selector)
        self.click(box[0], box[1])
        return box

    def screenshot(self, path, full_page=True):
        if full_page:
            h = self.eval("document.documentElement.scrollHeight")
            self.set_viewport(self.width, int(h))
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        if full_page:
            self.set_viewport(self.width, self.height)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    # -- lifetime ----------------------------------------------------------

    def close(self):
        if self.proc.poll() is None:
            try:
                self.send("Browser.close", session=False, timeout=5)
            except (CDPError, OSError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for fd in (self._w, self._r):
            try:
                os.close(fd)
            except OSError:
                pass
        self.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
