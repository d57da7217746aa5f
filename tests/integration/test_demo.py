"""`wabridge demo` against `wabridge run`: a customer's conversation reaches the agent, every kind of it,
and the agent's answer reaches the customer."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.run_support import clean_up, isolated_run, wait_until_healthy
from wabridge.settings import Settings


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_conversation_reaches_the_agent(tmp_path: Path, stack_settings: Settings) -> None:
    own = isolated_run()
    env = {**own.env, "PYTHONIOENCODING": "utf-8"}
    run_log = tmp_path / "run.log"
    with run_log.open("wb") as log:
        run = subprocess.Popen(
            [sys.executable, "-m", "wabridge", "run"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_until_healthy(tmp_path, env, timeout_s=90)
        demo = subprocess.run(
            [sys.executable, "-m", "wabridge", "demo"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            encoding="utf-8",
            timeout=120,
        )
        output = demo.stdout + demo.stderr
        assert demo.returncode == 0, output + "\n--- wabridge run ---\n" + run_log.read_text(errors="replace")[-20_000:]
        # As the agent saw it: the text, the caption, each attachment's media type, the location,
        # the reply note and the reaction.
        for expected in (
            "Hi! My order #1042 has not arrived yet.",
            "This is the label on the box",
            "[attachment] Image  image/jpeg",
            "[attachment] File  application/pdf  document.pdf",
            "[attachment] Audio  audio/ogg",
            "Location shared by the customer",
            '[In reply to their earlier message "Hi! My order #1042 has not arrived yet."]',
            "It was due last Monday.",
            'Reacted 👍 to their earlier message "[image] This is the label on the box"',
            "Sheena Nelson:",
        ):
            assert expected in output, output
        # The agent's answers, as the customer's phone got them, Genesys's receipts for them, and the
        # customer's tap on a quick reply as the agent saw it.
        for expected in (
            "Sorry about that, Sheena! Your parcel left our warehouse",
            "[image ",
            "This is your parcel at our depot",
            "Shall we bring it to your door or to a pick-up point?",
            "[ To my door ]  [ Pick-up point ]",
            "Genesys receipts for the agent's messages: Delivered x3",
            'the agent sees: "To my door" (QuickReply), in answer to "Shall we bring it',
            # A customer known only by their WhatsApp username: the agent sees the username, and
            # the reply reaches them by their BSUID.
            "ana.m:",
            "Hi, is the shop open on Sunday?",
            "ana.m's phone: Hi Ana, yes: Sundays 10:00 to 16:00.",
            "in 'recipient': US.13491208655300000042",
        ):
            assert expected in output, output
        assert "sent 7, delivered 7, failed 0, in " in output.splitlines()[-1], output
    finally:
        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=60) == 0
        asyncio.run(clean_up(own.settings))
    assert "everything is up" in run_log.read_text(errors="replace")
