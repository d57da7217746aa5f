-- WhatsApp usernames and agent templates (issue 24).

-- The WhatsApp Business Account each number belongs to: the tenant's message templates are listed
-- per WABA (GET /{waba-id}/message_templates), so an agent's template is checked before it is sent.
ALTER TABLE tenant_phone_numbers ADD COLUMN waba_id VARCHAR(50);

-- A long agent message is sent as several WhatsApp parts; Genesys gets one final receipt for the
-- whole message, once every part's outcome is known. `parts` is how many the message has;
-- `final_receipt_at` marks the message's final receipt as posted (on part 0).
ALTER TABLE outbound_sends ADD COLUMN parts INTEGER NOT NULL DEFAULT 1;
ALTER TABLE outbound_sends ADD COLUMN final_receipt_at TIMESTAMPTZ;

-- One customer under every identifier Meta gives them: a phone number (wa_id), a business-scoped
-- user id (BSUID), or both, changing over time. Each identifier of a tenant points at the customer
-- key it was first seen with; the bridge keys records by that key, so a customer who adopts a
-- username, or changes number, stays one conversation and one ordered stream. Rows are only
-- inserted (ON CONFLICT DO NOTHING): a key, once given, never changes.
CREATE TABLE customer_identities (
    tenant_id     VARCHAR(255) NOT NULL,
    identifier    VARCHAR(255) NOT NULL,
    customer_id   VARCHAR(255) NOT NULL,
    created_at    TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    PRIMARY KEY (tenant_id, identifier)
);

-- Every live conversation's customer keeps the key it has: its key, phone number and BSUID point
-- at it from the start.
INSERT INTO customer_identities (tenant_id, identifier, customer_id)
SELECT tenant_id, identifier, customer_id
FROM conversation_mappings,
     LATERAL (VALUES (customer_id), (bsuid), (wa_id)) AS ids(identifier)
WHERE moved_to_customer_id IS NULL AND identifier IS NOT NULL
ON CONFLICT DO NOTHING;
