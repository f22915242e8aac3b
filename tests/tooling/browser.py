"""Headless-Chromium check of a static HTML page: does every ``<img>`` and ``<audio>`` load?

Used by ``tests/test_report.py`` on the ``chanmusic report`` page. The browser is ``$CHANMUSIC_BROWSER``, else the
first of :data:`BROWSERS` on ``PATH``, else ``/usr/bin/chromium`` (install it with ``.ci/setup-browser.sh``).
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

CHECK_SCRIPT = """
<script>
(function(){
  function state(){
    var out=[];
    document.querySelectorAll('img').forEach(function(e){
      out.push({tag:'img',src:e.getAttribute('src'),ok:!!(e.complete&&e.naturalWidth>0)});});
    document.querySelectorAll('audio').forEach(function(e){
      out.push({tag:'audio',src:e.getAttribute('src'),ok:e.readyState>=1&&!e.error,
                error:e.error?e.error.code:null});});
    var pre=document.getElementById('__load_status__')||document.createElement('pre');
    pre.id='__load_status__'; pre.textContent=JSON.stringify(out); document.body.appendChild(pre);
  }
  document.querySelectorAll('audio').forEach(function(e){e.addEventListener('error',state);
                                                          e.addEventListener('loadedmetadata',state);});
  window.addEventListener('load',function(){state();setTimeout(state,500);setTimeout(state,2000);});
})();
</script>
"""


def find_browser() -> str | None:
    """The Chromium binary to use, or None when there is none."""
    env = os.environ.get("CHANMUSIC_BROWSER")
    if env and Path(env).is_file():
        return env
    for name in BROWSERS:
        p = shutil.which(name)
        if p:
            return p
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


def _browser_cmd(browser: str, profile: str) -> list[str]:
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
            "--mute-audio", "--allow-file-access-from-files", f"--user-data-dir={profile}"]


def check_in_browser(index: str | Path, browser: str | None = None, screenshot: str | Path | None = None,
                     budget_ms: int = 8000, timeout_s: float = 90) -> dict[str, Any]:
    """Open a copy of ``index`` with a status script in headless Chromium and read back which ``<img>`` and
    ``<audio>`` elements loaded (``img.complete && naturalWidth > 0``; audio ``readyState ≥ 1`` without error).
    Returns ``{"elements": [...], "broken": [...], "screenshot": path | None}``."""
    browser = browser or find_browser()
    if not browser:
        raise FileNotFoundError("no Chromium binary (install it with .ci/setup-browser.sh)")
    index = Path(index).resolve()
    text = index.read_text()
    check = index.with_name("_load_check.html")
    check.write_text(text.replace("</body>", CHECK_SCRIPT + "</body>") if "</body>" in text else text + CHECK_SCRIPT)
    try:
        with tempfile.TemporaryDirectory(prefix="chanmusic-chromium-") as prof:
            cmd = _browser_cmd(browser, prof) + [f"--virtual-time-budget={budget_ms}", "--dump-dom", check.as_uri()]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
            m = re.search(r'<pre id="__load_status__">(.*?)</pre>', proc.stdout, re.S)
            if not m:
                raise RuntimeError(f"the browser returned no load status (exit {proc.returncode}): "
                                   f"{first_stderr_line(proc.stderr)}")
            elements = json.loads(html.unescape(m.group(1)))
            shot = None
            if screenshot:
                shot = Path(screenshot).resolve()
                subprocess.run(_browser_cmd(browser, prof) + [f"--virtual-time-budget={budget_ms}",
                                                              "--window-size=1280,2400", "--hide-scrollbars",
                                                              f"--screenshot={shot}", index.as_uri()],
                               capture_output=True, text=True, timeout=timeout_s)
                shot = shot if shot.is_file() else None
    finally:
        check.unlink(missing_ok=True)
    return {"elements": elements, "broken": [e for e in elements if not e.get("ok")], "screenshot": shot}


def first_stderr_line(s: str) -> str:
    """The browser's last meaningful stderr line (dbus noise skipped), at most 200 characters."""
    lines = [l for l in (s or "").splitlines() if l.strip() and "dbus" not in l.lower()]
    return lines[-1][:200] if lines else ""
