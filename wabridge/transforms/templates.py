"""An agent's template checked against the tenant's WhatsApp templates, before Meta is asked (pure).

Meta lists a WABA's templates (``GET /{waba-id}/message_templates``: name, language, category,
status, components; Meta's "Message templates" page, reference ``whatsapp-cloud-api.md``, "Checked
2026-12-07"). :func:`known_template` reads one entry; :func:`template_problem` says, in words an
agent can act on, why Meta would refuse the agent's template: not one of the account's templates in
that language (Meta's 132001), not approved (paused 132015, disabled 132016), a parameter count that
does not match (132000), or an authentication template to a customer known only by a BSUID (131062:
one-tap, zero-tap and copy-code templates need a phone number).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from wabridge.schemas.genesys import ReasonCode, Template
from wabridge.schemas.lenient import as_dict, as_dicts

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_MEDIA_FORMATS = frozenset({"IMAGE", "VIDEO", "DOCUMENT"})

MARKETING = "MARKETING"
AUTHENTICATION = "AUTHENTICATION"


@dataclass(frozen=True, slots=True)
class KnownTemplate:
    """What the checks need of one of Meta's templates."""

    name: str
    language: str
    category: str  # MARKETING | UTILITY | AUTHENTICATION
    status: str  # APPROVED | PENDING | REJECTED | PAUSED | DISABLED | ...
    header_format: str | None = None  # TEXT | IMAGE | VIDEO | DOCUMENT | LOCATION
    header_parameters: int = 0
    body_parameters: int = 0
    url_parameter_buttons: tuple[int, ...] = ()  # indexes of URL buttons with a {{1}} suffix

    @property
    def key(self) -> tuple[str, str]:
        return self.name, self.language


def _placeholders(text: Any) -> int:
    return len(set(_PLACEHOLDER.findall(text))) if isinstance(text, str) else 0


def known_template(raw: Any) -> KnownTemplate | None:
    """One entry of Meta's template list; None when it names no template."""
    entry = as_dict(raw)
    name, language = entry.get("name"), entry.get("language")
    if not isinstance(name, str) or not isinstance(language, str) or not name or not language:
        return None
    components = {str(c.get("type", "")).upper(): c for c in as_dicts(entry.get("components"))}
    header = components.get("HEADER")
    header_format = str(header.get("format") or "TEXT").upper() if header else None
    buttons = as_dicts(as_dict(components.get("BUTTONS")).get("buttons"))
    return KnownTemplate(
        name=name,
        language=language,
        category=str(entry.get("category") or "").upper(),
        status=str(entry.get("status") or "").upper(),
        header_format=header_format,
        header_parameters=_placeholders(header.get("text")) if header and header_format == "TEXT" else 0,
        body_parameters=_placeholders(as_dict(components.get("BODY")).get("text")),
        url_parameter_buttons=tuple(
            index
            for index, button in enumerate(buttons)
            if str(button.get("type", "")).upper() == "URL" and _placeholders(button.get("url"))
        ),
    )


def template_problem(
    known: KnownTemplate | None, template: Template, *, to_bsuid: bool, others: list[str] | None = None
) -> tuple[ReasonCode, str] | None:
    """Why Meta would refuse ``template`` (the reason code and a note for the agent), or None."""
    name = f"'{template.name}' ({template.language})"
    if known is None:
        languages = f"; it exists in {', '.join(sorted(others))}" if others else ""
        return ReasonCode.MESSAGE_NOT_ALLOWED, (
            f"WhatsApp template {name} is not one of this WhatsApp Business Account's templates{languages}"
        )
    if known.status != "APPROVED":
        return ReasonCode.MESSAGE_NOT_ALLOWED, f"WhatsApp template {name} is {known.status.lower()} at Meta"
    if known.category == AUTHENTICATION and to_bsuid:
        return ReasonCode.MESSAGE_NOT_ALLOWED, (
            f"WhatsApp template {name} is an authentication template, which needs the customer's phone "
            "number; this customer is known only by their WhatsApp username"
        )
    counts = _count_problems(known, template)
    if counts:
        return ReasonCode.INVALID_MESSAGE_STRUCTURE, f"WhatsApp template {name} {'; '.join(counts)}"
    return None


def _count_problems(known: KnownTemplate, template: Template) -> list[str]:
    problems = []
    if known.header_format in _MEDIA_FORMATS and template.header_media is None:
        problems.append(f"needs a {known.header_format.lower()} in its header, and the message has none")
    elif known.header_format not in _MEDIA_FORMATS and template.header_media is not None:
        problems.append("has no media header, and the message has one")
    if known.header_format not in _MEDIA_FORMATS and len(template.header_parameters) != known.header_parameters:
        problems.append(
            f"takes {known.header_parameters} header parameters, the message has {len(template.header_parameters)}"
        )
    if len(template.body_parameters) != known.body_parameters:
        problems.append(
            f"takes {known.body_parameters} body parameters, the message has {len(template.body_parameters)}"
        )
    given = {b.index for b in template.buttons if b.type.lower() == "url" and b.parameters}
    missing = [index for index in known.url_parameter_buttons if index not in given]
    if missing:
        problems.append(f"needs the URL of button {', '.join(str(i + 1) for i in missing)}")
    return problems
