"""An agent's message as WhatsApp messages: each Genesys content kind in the form WhatsApp shows,
within its limits, and nothing the agent wrote silently dropped."""

from __future__ import annotations

from typing import Any

import pytest

from wabridge.schemas.genesys import ReasonCode, parse_outbound_webhook
from wabridge.simulators.agent import build_agent_structured, build_agent_text, list_picker, notification, quick_replies
from wabridge.simulators.meta import interactive_problem
from wabridge.transforms.outbound import Unsendable, whatsapp_kind, whatsapp_parts


def parts_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [part.message for part in whatsapp_parts(parse_outbound_webhook(body, tenant_id="acme"))]


def structured(content: list[dict[str, Any]], text: str | None = "Choose") -> list[dict[str, Any]]:
    return parts_of(build_agent_structured(integration_id="i", to_id="1650", content=content, text=text))


def test_up_to_three_short_quick_replies_are_buttons_that_meta_accepts() -> None:
    [message] = structured(quick_replies("Yes", "No", "Maybe later"))
    assert message["interactive"]["type"] == "button"
    assert interactive_problem(message["interactive"]) is None


@pytest.mark.parametrize(
    ("choices", "why"),
    [
        (["Yes", "No", "Maybe", "Never"], "four buttons"),
        (["Call me back tomorrow", "No"], "a title over 20 characters"),
    ],
)
def test_quick_replies_beyond_buttons_become_a_list_that_meta_accepts(choices: list[str], why: str) -> None:
    [message] = structured(quick_replies(*choices))
    assert message["interactive"]["type"] == "list", why
    assert interactive_problem(message["interactive"]) is None
    rows = [row["title"] for section in message["interactive"]["action"]["sections"] for row in section["rows"]]
    assert rows == choices


def test_choices_beyond_a_list_become_numbered_text_with_every_choice() -> None:
    long_titles = ["An option with a title far too long for a list row", "Short"]
    for choices in ([f"Choice {n}" for n in range(11)], long_titles):
        [message] = structured(quick_replies(*choices))
        assert message["type"] == "text"
        body = message["text"]["body"]
        assert body.startswith("Choose\n\n1. ") and all(f"{n}. {c}" in body for n, c in enumerate(choices, 1))


def test_a_list_picker_keeps_its_sections_and_needs_titles_when_several() -> None:
    [message] = structured(list_picker({"Shirts": ["S", "M"], "Shoes": ["40"]}), text=None)
    assert message["interactive"]["body"]["text"] == "Please choose:"
    assert [s["title"] for s in message["interactive"]["action"]["sections"]] == ["Shirts", "Shoes"]
    assert interactive_problem(message["interactive"]) is None
    [untitled] = structured(list_picker({"": ["S"], "Shoes": ["40"]}))
    assert untitled["type"] == "text"  # WhatsApp refuses several sections without titles


def test_a_notification_is_a_template_send_with_its_parameters() -> None:
    [message] = structured(notification("order_update", "pt-BR", "Ana", "#123"), text=None)
    assert message == {
        "type": "template",
        "template": {
            "name": "order_update",
            "language": {"code": "pt_BR"},
            "components": [
                {"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "#123"}]}
            ],
        },
    }


def test_content_whatsapp_cannot_show_is_refused_by_name() -> None:
    with pytest.raises(Unsendable, match="Carousel") as refused:
        structured([{"contentType": "Carousel", "carousel": {}}])
    assert refused.value.code is ReasonCode.UNSUPPORTED_MESSAGE


def test_malformed_structured_content_is_read_as_far_as_it_goes() -> None:
    content: list[dict[str, Any]] = [
        {"contentType": "QuickReply", "quickReply": {"text": None, "payload": 5}},
        {"contentType": "QuickReply", "quickReply": "not an object"},
        {"contentType": "QuickReply", "quickReply": {"text": 42}},
        {"contentType": "ListPicker", "listPicker": {"sections": [{"items": "nope"}, 7]}},
        {"contentType": "Notification", "template": {"id": ["x"]}},
    ]
    [message] = structured(content)
    assert [b["reply"]["title"] for b in message["interactive"]["action"]["buttons"]] == ["42"]


@pytest.mark.parametrize(
    ("mime", "kind"),
    [
        ("image/jpeg", "image"),
        ("image/png", "image"),
        ("image/gif", "document"),  # WhatsApp images are JPEG or PNG only
        ("video/mp4", "video"),
        ("video/quicktime", "document"),
        ("audio/ogg; codecs=opus", "audio"),
        ("application/pdf", "document"),
        (None, "document"),
    ],
)
def test_attachments_go_as_the_whatsapp_type_that_takes_them(mime: str | None, kind: str) -> None:
    assert whatsapp_kind(mime) == kind


def test_a_short_text_is_the_caption_of_a_single_attachment_otherwise_it_goes_first() -> None:
    def body(text: str, count: int) -> dict[str, Any]:
        message = build_agent_text(integration_id="i", to_id="1650", text=text)
        message["content"] = [
            {
                "contentType": "Attachment",
                "attachment": {"mediaType": "Image", "url": f"https://g/{n}", "mime": "image/png"},
            }
            for n in range(count)
        ]
        return message

    [captioned] = parts_of(body("Look", 1))
    assert captioned == {"type": "image", "image": {"caption": "Look"}}
    text, *images = parts_of(body("Look", 2))
    assert text["text"]["body"] == "Look" and [m["type"] for m in images] == ["image", "image"]
    long_text = "x" * 1025
    first, second = parts_of(body(long_text, 1))
    assert first["type"] == "text" and second == {"type": "image", "image": {}}
