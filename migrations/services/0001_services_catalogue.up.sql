-- The services catalogue: categories, services, featured categories.
-- Constraints live here; services-api maps their names to 409/422 responses.

CREATE TABLE services.service_categories (
    category_id           uuid PRIMARY KEY,
    name                  text NOT NULL CONSTRAINT service_categories_name_length CHECK (char_length(name) BETWEEN 1 AND 255),
    slug                  text NOT NULL CONSTRAINT service_categories_slug_format CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND char_length(slug) <= 100),
    order_number          integer NOT NULL DEFAULT 0,
    is_default_unassigned boolean NOT NULL DEFAULT false,
    created_on            timestamptz NOT NULL DEFAULT now(),
    created_by            text NOT NULL,
    modified_on           timestamptz,
    modified_by           text,
    is_deleted            boolean NOT NULL DEFAULT false,
    deleted_on            timestamptz,
    deleted_by            text,
    CONSTRAINT service_categories_default_not_deleted CHECK (NOT (is_default_unassigned AND is_deleted)),
    CONSTRAINT service_categories_deleted_consistent CHECK (is_deleted = (deleted_on IS NOT NULL))
);

CREATE UNIQUE INDEX service_categories_slug_live_key ON services.service_categories (slug) WHERE NOT is_deleted;
CREATE UNIQUE INDEX service_categories_single_default_key ON services.service_categories (is_default_unassigned) WHERE is_default_unassigned;
CREATE INDEX service_categories_live_order_idx ON services.service_categories (order_number, name) WHERE NOT is_deleted;

CREATE TABLE services.services (
    service_id           uuid PRIMARY KEY,
    title                text NOT NULL CONSTRAINT services_title_length CHECK (char_length(title) BETWEEN 1 AND 255),
    description          text NOT NULL CONSTRAINT services_description_length CHECK (char_length(description) BETWEEN 1 AND 10000),
    slug                 text NOT NULL CONSTRAINT services_slug_format CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND char_length(slug) <= 100),
    long_description_url text CONSTRAINT services_long_description_url_https CHECK (long_description_url ~ '^https://[^\s]+$' AND char_length(long_description_url) <= 2048),
    category_id          uuid NOT NULL CONSTRAINT services_category_fk REFERENCES services.service_categories (category_id),
    image_url            text CONSTRAINT services_image_url_https CHECK (image_url ~ '^https://[^\s]+$' AND char_length(image_url) <= 2048),
    order_number         integer NOT NULL DEFAULT 0,
    delivery_mode        text NOT NULL CONSTRAINT services_delivery_mode_valid CHECK (delivery_mode IN ('mobile_service', 'outpatient_service', 'inpatient_service')),
    publishing_status    text NOT NULL DEFAULT 'draft' CONSTRAINT services_publishing_status_valid CHECK (publishing_status IN ('draft', 'published', 'archived')),
    created_on           timestamptz NOT NULL DEFAULT now(),
    created_by           text NOT NULL,
    modified_on          timestamptz,
    modified_by          text,
    is_deleted           boolean NOT NULL DEFAULT false,
    deleted_on           timestamptz,
    deleted_by           text,
    -- Title weighs more than description in search ranking.
    search_vector        tsvector GENERATED ALWAYS AS (
                             setweight(to_tsvector('english', title), 'A') ||
                             setweight(to_tsvector('english', description), 'B')
                         ) STORED,
    CONSTRAINT services_deleted_consistent CHECK (is_deleted = (deleted_on IS NOT NULL))
);

CREATE UNIQUE INDEX services_slug_live_key ON services.services (slug) WHERE NOT is_deleted;
-- Public listing: published, live, ordered by order_number then title.
CREATE INDEX services_public_order_idx ON services.services (order_number, title)
    WHERE publishing_status = 'published' AND NOT is_deleted;
CREATE INDEX services_public_category_idx ON services.services (category_id, order_number, title)
    WHERE publishing_status = 'published' AND NOT is_deleted;
CREATE INDEX services_public_delivery_mode_idx ON services.services (delivery_mode, order_number, title)
    WHERE publishing_status = 'published' AND NOT is_deleted;
CREATE INDEX services_category_idx ON services.services (category_id);
CREATE INDEX services_admin_order_idx ON services.services (order_number, title);
CREATE INDEX services_status_idx ON services.services (publishing_status);
CREATE INDEX services_search_idx ON services.services USING gin (search_vector);

CREATE TABLE services.featured_categories (
    featured_category_id uuid PRIMARY KEY,
    category_id          uuid NOT NULL CONSTRAINT featured_categories_category_fk REFERENCES services.service_categories (category_id),
    feature_position     smallint NOT NULL CONSTRAINT featured_categories_position_range CHECK (feature_position IN (1, 2)),
    created_on           timestamptz NOT NULL DEFAULT now(),
    created_by           text NOT NULL,
    modified_on          timestamptz,
    modified_by          text,
    CONSTRAINT featured_categories_position_key UNIQUE (feature_position),
    CONSTRAINT featured_categories_category_key UNIQUE (category_id)
);

-- The default "Unassigned" category (fixed id, so every environment agrees on it).
INSERT INTO services.service_categories (category_id, name, slug, order_number, is_default_unassigned, created_by)
VALUES ('00000000-0000-4000-8000-000000000001', 'Unassigned', 'unassigned', 0, true, 'system');
