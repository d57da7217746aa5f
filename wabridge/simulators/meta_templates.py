"""The Meta simulator's message templates: each WABA's registry, its list endpoint, and what Meta
refuses in a template send.

Meta's documents (reference ``whatsapp-cloud-api.md``, "Checked 2026-12-07"; Meta's "Message
templates" and "Error codes" pages):

* names are lowercase letters, digits and underscores (a Genesys ``namespace@name`` is not one);
* ``GET /{waba-id}/message_templates`` lists ``{name, language, category, status, components, id}``
  in pages (``data``, ``paging.cursors.after``, ``paging.next``);
* a send names ``template.name`` and ``template.language.code``; parameters go per component:
  ``header`` (one text parameter per ``{{n}}`` of a TEXT header, or one image / video / document
  parameter for a media header), ``body`` (one per ``{{n}}``), and ``button`` components with
  ``sub_type`` and ``index`` (a URL button with a ``{{1}}`` suffix takes one text parameter, a quick
  reply button may take a ``payload``);
* refusals: 132001 the template does not exist in that language (or is not approved), 132000 the
  parameter count does not match, 132012 a parameter of the wrong format, 132015 paused, 132016
  disabled, 131062 an authentication template to a BSUID (it needs a phone number).
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")

Category = Literal["MARKETING", "UTILITY", "AUTHENTICATION"]
Status = Literal["APPROVED", "PENDING", "REJECTED", "PAUSED", "DISABLED"]
_MEDIA_FORMATS = {"IMAGE": "image", "VIDEO": "video", "DOCUMENT": "document"}


class TemplateRefused(Exception):
    """What Meta answers a template send with: a Graph error code and its message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class MetaTemplate(BaseModel):
    """One approved (or not) template of a WABA, in Meta's shape (``components`` as Meta lists them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    waba_id: str
    name: str
    language: str = "en_US"
    category: Category = "UTILITY"
    status: Status = "APPROVED"
    id: str = Field(default_factory=lambda: str(secrets.randbelow(10**15)))
    components: tuple[dict[str, Any], ...] = ({"type": "BODY", "text": "Hello {{1}}"},)

    def listed(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "language": self.language,
            "category": self.category,
            "status": self.status,
            "id": self.id,
            "components": list(self.components),
        }

    def component(self, kind: str) -> dict[str, Any] | None:
        return next((c for c in self.components if str(c.get("type", "")).upper() == kind), None)

    def buttons(self) -> list[dict[str, Any]]:
        holder = self.component("BUTTONS")
        buttons = holder.get("buttons") if holder else None
        return [b for b in buttons or [] if isinstance(b, dict)]


def placeholders(text: Any) -> int:
    return len(set(_PLACEHOLDER.findall(text))) if isinstance(text, str) else 0


def check_template_send(
    templates: list[MetaTemplate], waba_id: str, payload: dict[str, Any], *, to_bsuid: bool, opted_out: bool
) -> tuple[MetaTemplate, bool]:
    """The template a send names and whether Meta then fails it for the opt-out (after accepting);
    ``TemplateRefused`` for what Meta refuses at once."""
    name = payload.get("name")
    language = payload.get("language")
    code = language.get("code") if isinstance(language, dict) else None
    if not isinstance(name, str) or not TEMPLATE_NAME.match(name):
        raise TemplateRefused(132001, f"(#132001) Template name does not exist in the translation: {name!r}")
    found = next((t for t in templates if t.waba_id == waba_id and t.name == name and t.language == code), None)
    if found is None or found.status in ("PENDING", "REJECTED"):
        raise TemplateRefused(132001, f"(#132001) Template name does not exist in the translation: {name} ({code})")
    if found.status == "PAUSED":
        raise TemplateRefused(132015, f"(#132015) Template is paused: {name}")
    if found.status == "DISABLED":
        raise TemplateRefused(132016, f"(#132016) Template is disabled: {name}")
    if found.category == "AUTHENTICATION" and to_bsuid:
        raise TemplateRefused(131062, "(#131062) Authentication templates can't be sent to a business-scoped user ID")
    _check_parameters(found, payload.get("components"))
    return found, opted_out and found.category == "MARKETING"


def _check_parameters(template: MetaTemplate, components: Any) -> None:
    given: dict[str, list[dict[str, Any]]] = {"header": [], "body": []}
    buttons: dict[int, dict[str, Any]] = {}
    for component in components if isinstance(components, list) else []:
        if not isinstance(component, dict):
            raise TemplateRefused(132012, "(#132012) Parameter format does not match format in the created template")
        kind = component.get("type")
        parameters = [p for p in component.get("parameters") or [] if isinstance(p, dict)]
        if kind in given:
            given[kind] = parameters
        elif kind == "button":
            index = component.get("index")
            try:
                buttons[int(str(index))] = {"sub_type": component.get("sub_type"), "parameters": parameters}
            except (TypeError, ValueError) as exc:
                raise TemplateRefused(132012, "(#132012) A button component needs its index") from exc
    header = template.component("HEADER")
    header_format = str(header.get("format", "TEXT")).upper() if header else None
    if header_format in _MEDIA_FORMATS:
        kind = _MEDIA_FORMATS[header_format]
        params = given["header"]
        if len(params) != 1:
            raise TemplateRefused(132000, "(#132000) Number of parameters does not match the expected number of params")
        media = params[0].get(kind)
        if params[0].get("type") != kind or not isinstance(media, dict) or not (media.get("id") or media.get("link")):
            raise TemplateRefused(132012, f"(#132012) The header takes one {kind} parameter with an id or link")
    else:
        expected = placeholders(header.get("text")) if header else 0
        _count(given["header"], expected, "header")
    body = template.component("BODY")
    _count(given["body"], placeholders(body.get("text")) if body else 0, "body")
    for index, button in enumerate(template.buttons()):
        sent = buttons.pop(index, None)
        dynamic = str(button.get("type", "")).upper() == "URL" and placeholders(button.get("url")) > 0
        if dynamic and (sent is None or len(sent["parameters"]) != 1):
            raise TemplateRefused(132000, "(#132000) Number of parameters does not match the expected number of params")
    if buttons:
        raise TemplateRefused(132000, "(#132000) Number of parameters does not match the expected number of params")


def _count(parameters: list[dict[str, Any]], expected: int, where: str) -> None:
    if len(parameters) != expected:
        raise TemplateRefused(
            132000,
            f"(#132000) Number of parameters does not match the expected number of params ({where}: "
            f"{len(parameters)} given, {expected} expected)",
        )
    if any(p.get("type") != "text" or not isinstance(p.get("text"), str) for p in parameters):
        raise TemplateRefused(132012, "(#132012) Parameter format does not match format in the created template")
