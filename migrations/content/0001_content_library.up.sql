-- The content library: files, their access log, virus scans and storage backends
-- (shared/spec/content-api.md, "Data"). content-api maps constraint names to responses.

CREATE TABLE content.content (
    content_id            uuid PRIMARY KEY,
    original_filename     text NOT NULL CONSTRAINT content_filename_length CHECK (octet_length(original_filename) BETWEEN 1 AND 255),
    file_size             bigint NOT NULL CONSTRAINT content_file_size_positive CHECK (file_size > 0),
    mime_type             text NOT NULL CONSTRAINT content_mime_type_length CHECK (char_length(mime_type) BETWEEN 3 AND 255),
    content_hash          text NOT NULL CONSTRAINT content_hash_format CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    storage_path          text NOT NULL CONSTRAINT content_storage_path_length CHECK (char_length(storage_path) BETWEEN 1 AND 1024),
    upload_status         text NOT NULL DEFAULT 'processing' CONSTRAINT content_upload_status_valid CHECK (upload_status IN ('processing', 'available', 'failed', 'archived')),
    alt_text              text CONSTRAINT content_alt_text_length CHECK (char_length(alt_text) <= 500),
    description           text CONSTRAINT content_description_length CHECK (char_length(description) <= 5000),
    tags                  text[] NOT NULL DEFAULT '{}' CONSTRAINT content_tags_count CHECK (cardinality(tags) <= 50),
    content_category      text NOT NULL CONSTRAINT content_category_valid CHECK (content_category IN ('document', 'image', 'video', 'audio', 'archive')),
    access_level          text NOT NULL DEFAULT 'internal' CONSTRAINT content_access_level_valid CHECK (access_level IN ('public', 'internal', 'restricted')),
    upload_correlation_id uuid NOT NULL,
    processing_attempts   integer NOT NULL DEFAULT 0 CONSTRAINT content_processing_attempts_positive CHECK (processing_attempts >= 0),
    last_processed_at     timestamptz,
    -- Why the last processing attempt failed (status endpoint's error_message).
    processing_error      text,
    -- What processing produced: thumbnails generated, metadata extracted, storage verified.
    processing_details    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_on            timestamptz NOT NULL DEFAULT now(),
    created_by            text NOT NULL,
    modified_on           timestamptz,
    modified_by           text,
    is_deleted            boolean NOT NULL DEFAULT false,
    deleted_on            timestamptz,
    deleted_by            text,
    CONSTRAINT content_deleted_consistent CHECK (is_deleted = (deleted_on IS NOT NULL))
);

-- Public listing: available, public, live, newest first.
CREATE INDEX content_public_list_idx ON content.content (created_on DESC, content_id)
    WHERE upload_status = 'available' AND access_level = 'public' AND NOT is_deleted;
CREATE INDEX content_admin_list_idx ON content.content (created_on DESC, content_id);
-- Dedup: identical bytes are stored once (shared/spec/content-api.md, "Storage").
CREATE INDEX content_hash_idx ON content.content (content_hash);
CREATE INDEX content_storage_path_idx ON content.content (storage_path);
CREATE INDEX content_processing_idx ON content.content (last_processed_at) WHERE upload_status = 'processing';
CREATE INDEX content_tags_idx ON content.content USING gin (tags);

CREATE TABLE content.content_access_log (
    access_id        uuid PRIMARY KEY,
    content_id       uuid NOT NULL CONSTRAINT content_access_log_content_fk REFERENCES content.content (content_id) ON DELETE CASCADE,
    access_timestamp timestamptz NOT NULL DEFAULT now(),
    user_id          text,
    client_ip        inet,
    user_agent       text CONSTRAINT content_access_log_user_agent_length CHECK (char_length(user_agent) <= 512),
    access_type      text NOT NULL CONSTRAINT content_access_log_type_valid CHECK (access_type IN ('view', 'download', 'preview')),
    http_status_code smallint NOT NULL,
    bytes_served     bigint NOT NULL DEFAULT 0 CONSTRAINT content_access_log_bytes_positive CHECK (bytes_served >= 0),
    response_time_ms integer NOT NULL DEFAULT 0,
    correlation_id   uuid,
    referer_url      text CONSTRAINT content_access_log_referer_length CHECK (char_length(referer_url) <= 2048),
    cache_hit        boolean NOT NULL DEFAULT false,
    storage_backend  text
);

CREATE INDEX content_access_log_content_time_idx ON content.content_access_log (content_id, access_timestamp DESC);
CREATE INDEX content_access_log_time_idx ON content.content_access_log (access_timestamp);

CREATE TABLE content.content_virus_scan (
    scan_id           uuid PRIMARY KEY,
    content_id        uuid NOT NULL CONSTRAINT content_virus_scan_content_fk REFERENCES content.content (content_id) ON DELETE CASCADE,
    scan_timestamp    timestamptz NOT NULL DEFAULT now(),
    scanner_engine    text NOT NULL,
    scanner_version   text,
    scan_status       text NOT NULL CONSTRAINT content_virus_scan_status_valid CHECK (scan_status IN ('clean', 'infected', 'suspicious', 'error', 'skipped')),
    threats_detected  text[] NOT NULL DEFAULT '{}',
    scan_duration_ms  integer NOT NULL DEFAULT 0,
    correlation_id    uuid
);

CREATE INDEX content_virus_scan_content_idx ON content.content_virus_scan (content_id, scan_timestamp DESC);

CREATE TABLE content.content_storage_backend (
    backend_id        uuid PRIMARY KEY,
    backend_name      text NOT NULL CONSTRAINT content_storage_backend_name_key UNIQUE,
    backend_type      text NOT NULL CONSTRAINT content_storage_backend_type_valid CHECK (backend_type IN ('azure-blob', 'local-filesystem', 's3', 'gcs', 'memory')),
    is_active         boolean NOT NULL DEFAULT true,
    priority_order    integer NOT NULL DEFAULT 0,
    base_url          text,
    -- Never secrets: account names, containers, paths.
    configuration     jsonb NOT NULL DEFAULT '{}'::jsonb,
    last_health_check timestamptz,
    health_status     text NOT NULL DEFAULT 'unknown' CONSTRAINT content_storage_backend_health_valid CHECK (health_status IN ('healthy', 'degraded', 'unhealthy', 'unknown')),
    created_on        timestamptz NOT NULL DEFAULT now(),
    modified_on       timestamptz
);

-- Transactional outbox (libs/events), as in every schema that emits events.
CREATE TABLE content.outbox (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id uuid NOT NULL CONSTRAINT outbox_message_id_key UNIQUE,
    subject    text NOT NULL,
    payload    jsonb NOT NULL,
    headers    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    attempts   integer NOT NULL DEFAULT 0,
    last_error text
);
