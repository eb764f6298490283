"""Clipboard text both ways between the page and the customer's X clipboard, in
Japanese, once the customer allowed it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.agent.test_clipboard_rfb import clipboard
from tests.e2e.harness import World, wait_for
from tests.xdisplay import xvfb

from .conftest import connect, sign_in, wait_connected

pytestmark = [pytest.mark.e2e, pytest.mark.x11]

TO_CUSTOMER = "技術者から：設定ファイルのパス /etc/cups/cupsd.conf"
FROM_CUSTOMER = "お客様から：エラー番号 0x80070005 が出ました"


def test_clipboard_both_ways(cworld: World, page: Any) -> None:
    with xvfb(640, 480) as display, clipboard(display) as customer:
        agent = cworld.agent(display, "agent", "allow")
        creds = agent.next_line(60, event="credentials")
        sign_in(page, cworld)
        connect(page, creds["agent_id"], creds["password"])
        wait_connected(page)
        page.wait_for_selector("#screen canvas")
        # Opening the panel asks for the clipboard; the permission list shows it.
        page.click("#tabs button[data-panel='panel-clipboard']")
        page.click("#tabs button[data-panel='panel-consent']")
        page.wait_for_selector("#consent-list li[data-action='clipboard'] [data-state='granted']")
        page.click("#tabs button[data-panel='panel-clipboard']")
        customer.set_text(FROM_CUSTOMER)
        page.wait_for_function(
            "t => document.getElementById('clipboard-text').value === t", arg=FROM_CUSTOMER
        )
        page.fill("#clipboard-text", TO_CUSTOMER)
        page.click("#clipboard-send")
        wait_for(lambda: customer.read_text() == TO_CUSTOMER, 30, "the customer's clipboard")
