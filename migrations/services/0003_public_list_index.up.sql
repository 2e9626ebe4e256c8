-- The public list orders by (order_number, title, service_id): give each public index
-- the full sort key so a page is an index walk that stops after LIMIT rows, instead of a
-- sort of every published row.
DROP INDEX services.services_public_order_idx;
DROP INDEX services.services_public_category_idx;
DROP INDEX services.services_public_delivery_mode_idx;
CREATE INDEX services_public_list_idx ON services.services (order_number, title, service_id)
    WHERE publishing_status = 'published' AND NOT is_deleted;
CREATE INDEX services_public_category_list_idx ON services.services (category_id, order_number, title, service_id)
    WHERE publishing_status = 'published' AND NOT is_deleted;
CREATE INDEX services_public_delivery_mode_list_idx ON services.services (delivery_mode, order_number, title, service_id)
    WHERE publishing_status = 'published' AND NOT is_deleted;
