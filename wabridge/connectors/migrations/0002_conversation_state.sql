-- Conversation state of the workers (issue 5).

-- The rank of a tracked status, as wabridge.schemas.status ranks it, so that a status upsert moves
-- forward atomically in one statement (no read-then-write across workers). Unknown values rank
-- lowest: they never overwrite a known status.
CREATE FUNCTION status_rank(status TEXT) RETURNS INTEGER
LANGUAGE SQL IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE status
        WHEN 'received'  THEN 0
        WHEN 'accepted'  THEN 0
        WHEN 'sent'      THEN 1
        WHEN 'delivered' THEN 2
        WHEN 'read'      THEN 3
        WHEN 'played'    THEN 4
        WHEN 'failed'    THEN 100
        ELSE -1
    END
$$;

-- A number (or user-id) change moves a conversation to the customer's new id. The old row stays as
-- a tombstone: a replay of the old id's earlier messages (timestamp before moved_at) resolves to
-- the same conversation instead of creating a second one, while a message sent from the old id
-- after the change (the number may belong to someone else by then) starts a new conversation.
ALTER TABLE conversation_mappings
    ADD COLUMN moved_to_customer_id VARCHAR(255),
    ADD COLUMN moved_at             TIMESTAMPTZ;
