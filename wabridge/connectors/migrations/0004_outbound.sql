-- Sends of agent messages to WhatsApp (issue 14).

-- One row per part of an agent's message (a text over WhatsApp's 4096 characters is several):
-- the outbound stage records the attempt before it POSTs, and the wamid Meta assigned after. A
-- part with a wamid is never sent again, whatever Genesys retries or Kafka redelivers; one with
-- attempts but no wamid was in flight when a worker died and is sent again, counted and logged.
CREATE TABLE outbound_sends (
    tenant_id           VARCHAR(255) NOT NULL,
    genesys_message_id  VARCHAR(255) NOT NULL,
    part                INTEGER      NOT NULL,
    customer_id         VARCHAR(255) NOT NULL,
    wamid               VARCHAR(255),
    attempts            INTEGER      NOT NULL DEFAULT 1,
    created_at          TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    sent_at             TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, genesys_message_id, part)
);

-- A status webhook names the part by its wamid; a status that comes before the send's own write
-- looks for the customer's parts still without one.
CREATE INDEX idx_outbound_sends_wamid ON outbound_sends (tenant_id, wamid);
CREATE INDEX idx_outbound_sends_unconfirmed ON outbound_sends (tenant_id, customer_id) WHERE wamid IS NULL;
