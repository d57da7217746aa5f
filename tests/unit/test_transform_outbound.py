"""An agent's message as WhatsApp messages: each Genesys content kind in the form WhatsApp shows,
within its limits, and nothing the agent wrote silently dropped."""

from __future__ import annotations

from typing import Any

import pytest

from wabridge.schemas.genesys import ReasonCode, meta_language, parse_outbound_webhook
from wabridge.simulators.agent import build_agent_structured, build_agent_text, list_picker, notification, quick_replies
from wabridge.simulators.meta import interactive_problem
from wabridge.simulators.meta_templates import MetaTemplate, check_template_send
from wabridge.transforms.outbound import Unsendable, whatsapp_address, whatsapp_kind, whatsapp_parts


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


# -- Templates as Genesys sends them, checked by the Meta simulator's template rules ---------------

WABA = "waba-1"
SHIPPED = MetaTemplate(
    waba_id=WABA,
    name="order_shipped",
    language="en_US",
    components=(
        {"type": "HEADER", "format": "IMAGE"},
        {"type": "BODY", "text": "Hi {{1}}, order {{2}} is on its way."},
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "URL", "text": "Track", "url": "https://example.com/t/{{1}}"},
                {"type": "QUICK_REPLY", "text": "Stop"},
            ],
        },
    ),
)


def test_a_genesys_template_becomes_the_template_meta_accepts() -> None:
    content = notification(
        "5f1c_namespace@order_shipped",
        "en-us",
        "Ana",
        "#123",
        header_media={"mediaType": "Image", "url": "https://files.example/p.jpg", "mime": "image/jpeg"},
        buttons=(
            {"type": "Url", "index": 0, "parameters": [{"text": "A1B2"}]},
            {"type": "QuickReply", "index": 1, "payload": "stop-updates"},
        ),
    )
    outbound = parse_outbound_webhook(
        build_agent_structured(integration_id="i", to_id="1650", content=content, text=None), tenant_id="acme"
    )
    [part] = whatsapp_parts(outbound)
    assert outbound.template is not None and outbound.template.namespace == "5f1c_namespace"
    template = part.message["template"]
    assert (template["name"], template["language"]) == ("order_shipped", {"code": "en_US"})
    assert part.header_kind == "image" and part.attachment is not None
    assert part.attachment.url == "https://files.example/p.jpg"
    components = template["components"]
    assert components[2] == {
        "type": "button",
        "sub_type": "url",
        "index": 0,
        "parameters": [{"type": "text", "text": "A1B2"}],
    }
    assert components[3]["parameters"] == [{"type": "payload", "payload": "stop-updates"}]
    # The stage fills the header with the uploaded file's id; then Meta's rules accept the send.
    components[0]["parameters"][0]["image"] = {"id": "123"}
    found, _ = check_template_send([SHIPPED], WABA, template, to_bsuid=False, opted_out=False)
    assert found.name == "order_shipped"


@pytest.mark.parametrize(
    ("genesys", "meta"), [("en-US", "en_US"), ("pt_br", "pt_BR"), ("es", "es"), ("ZH-hk", "zh_HK"), (None, "en")]
)
def test_genesys_languages_become_metas_codes(genesys: str | None, meta: str) -> None:
    assert meta_language(genesys) == meta


def test_a_list_picker_keeps_the_agents_title_and_button_label_within_metas_limits() -> None:
    [message] = structured(list_picker({"Sizes": ["S", "M"]}, title="Which size fits?", button_label="See sizes"))
    interactive = message["interactive"]
    assert interactive["header"] == {"type": "text", "text": "Which size fits?"}
    assert interactive["action"]["button"] == "See sizes"
    assert interactive_problem(interactive) is None
    long = structured(list_picker({"Sizes": ["S"]}, title="T" * 80, button_label="A label far over twenty"))
    interactive = long[0]["interactive"]
    assert len(interactive["header"]["text"]) == 60 and interactive["header"]["text"].endswith("…")
    assert interactive["action"]["button"] == "A label far over tw…"
    assert interactive_problem(interactive) is None


@pytest.mark.parametrize(
    ("customer", "wa_id", "address"),
    [
        ("16505551234", None, {"to": "16505551234"}),
        ("US.13491208655302741918", None, {"recipient": "US.13491208655302741918"}),
        ("US.13491208655302741918", "16505551234", {"to": "16505551234"}),  # the phone, once known
        ("16505551234", "16505550000", {"to": "16505550000"}),  # the number they changed to
    ],
)
def test_a_bsuid_goes_in_recipient_and_a_phone_in_to(customer: str, wa_id: str | None, address: dict[str, str]) -> None:
    assert whatsapp_address(customer, wa_id) == address
