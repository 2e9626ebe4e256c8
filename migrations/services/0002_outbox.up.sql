-- Transactional outbox: events and audit records written with the change they describe,
-- relayed to NATS JetStream afterwards (libs/events).
CREATE TABLE services.outbox (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id uuid NOT NULL CONSTRAINT outbox_message_id_key UNIQUE,
    subject    text NOT NULL,
    payload    jsonb NOT NULL,
    headers    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    attempts   integer NOT NULL DEFAULT 0,
    last_error text
);
