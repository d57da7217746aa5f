-- The seed's tables in PostgreSQL syntax (the seed writes MySQL-style inline INDEX clauses).

CREATE TABLE tenants (
    id          VARCHAR(255) PRIMARY KEY,
    name        TEXT         NOT NULL,
    active      BOOLEAN      NOT NULL DEFAULT TRUE,
    -- Non-secret settings: Genesys region and integration id, Graph API base URL, rate limits.
    config      JSONB        NOT NULL DEFAULT '{}'::jsonb,
    created_at  TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    updated_at  TIMESTAMPTZ  NOT NULL DEFAULT NOW()
);

-- A tenant owns one or more WhatsApp business numbers; webhooks are routed by phone_number_id.
CREATE TABLE tenant_phone_numbers (
    phone_number_id       VARCHAR(50)  PRIMARY KEY,
    tenant_id             VARCHAR(255) NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    display_phone_number  VARCHAR(50)  NOT NULL,
    created_at            TIMESTAMPTZ  NOT NULL DEFAULT NOW()
);
CREATE INDEX idx_tenant_phone_numbers_tenant_id ON tenant_phone_numbers (tenant_id);

-- Every value in `credentials` is a Fernet token (encrypted with WABRIDGE_SECRETS_KEY).
CREATE TABLE tenant_credentials (
    tenant_id    VARCHAR(255) PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    credentials  JSONB        NOT NULL DEFAULT '{}'::jsonb,
    updated_at   TIMESTAMPTZ  NOT NULL DEFAULT NOW()
);

CREATE TABLE conversation_mappings (
    id                       BIGSERIAL    PRIMARY KEY,
    tenant_id                VARCHAR(255) NOT NULL,
    -- The customer key: wa_id when Meta gives one, else the business-scoped user id (BSUID).
    customer_id              VARCHAR(255) NOT NULL,
    wa_id                    VARCHAR(50),
    bsuid                    VARCHAR(255),
    conversation_id          UUID         NOT NULL,
    genesys_conversation_id  VARCHAR(255),
    contact_name             VARCHAR(255),
    phone_number_id          VARCHAR(50),
    display_phone_number     VARCHAR(50),
    created_at               TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    last_activity_at         TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    UNIQUE (tenant_id, customer_id),
    UNIQUE (tenant_id, wa_id)
);
CREATE INDEX idx_conversation_mappings_wa_id ON conversation_mappings (wa_id);
CREATE INDEX idx_conversation_mappings_conversation_id ON conversation_mappings (conversation_id);
CREATE INDEX idx_conversation_mappings_tenant_id ON conversation_mappings (tenant_id);
CREATE INDEX idx_conversation_mappings_bsuid ON conversation_mappings (tenant_id, bsuid);

CREATE TABLE message_tracking (
    id                  BIGSERIAL    PRIMARY KEY,
    -- The wamid for inbound messages; the Genesys message id for agent (outbound) messages.
    message_id          VARCHAR(255) NOT NULL,
    direction           VARCHAR(10)  NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    tenant_id           VARCHAR(255) NOT NULL,
    customer_id         VARCHAR(255),
    conversation_id     UUID,
    status              VARCHAR(20)  NOT NULL,
    meta_message_id     VARCHAR(255),
    genesys_message_id  VARCHAR(255),
    error               JSONB,
    created_at          TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    updated_at          TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    UNIQUE (tenant_id, direction, message_id)
);
CREATE INDEX idx_message_tracking_conversation_id ON message_tracking (conversation_id);
CREATE INDEX idx_message_tracking_genesys_message_id ON message_tracking (genesys_message_id);
CREATE INDEX idx_message_tracking_meta_message_id ON message_tracking (meta_message_id);
