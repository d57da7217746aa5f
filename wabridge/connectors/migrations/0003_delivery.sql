-- Delivery to Genesys (issue 6).

-- Genesys has no idempotency key for inbound messages (reference: "assume it does not dedupe on
-- channel.messageId"), so the deliver stage records each attempt before it POSTs: a message with a
-- Genesys id is never POSTed again; one with attempts but no Genesys id was in flight when a worker
-- died, and is sent again (at least once beats lost), counted and logged as unconfirmed.
ALTER TABLE message_tracking
    ADD COLUMN delivery_attempts INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN delivered_at      TIMESTAMPTZ;
