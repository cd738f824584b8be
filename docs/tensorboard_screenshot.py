"""The README's screenshot: a run's HParams table in TensorBoard, in headless Chromium.

    python docs/tensorboard_screenshot.py outputs/<run> docs/tensorboard_hparams.png

Starts `tensorboard` on 127.0.0.1 for RUN/tensorboard, opens its HParams dashboard with
Playwright driving Debian's /usr/bin/chromium (`apt-get install chromium`), waits until the
table shows every session, saves a PNG and stops the server.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def main(run_dir: str, out: str) -> None:
    from playwright.sync_api import sync_playwright

    sessions = sum(1 for _ in Path(run_dir, "tensorboard").rglob("events.out.tfevents.*")) - 1  # minus the root
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", f"{run_dir}/tensorboard",
                               "--host", "127.0.0.1", "--port", str(port)], stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{url}/data/runs", timeout=5)
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.goto(f"{url}/#hparams")
            trial_ids = page.locator("div.table-cell").filter(has_text=re.compile(r"^candidate_\d+/fold_"))
            for _ in range(120):
                if trial_ids.count() >= min(sessions, 18):  # the rows that fit the viewport
                    break
                page.wait_for_timeout(500)
            page.wait_for_timeout(1000)
            page.screenshot(path=out)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
