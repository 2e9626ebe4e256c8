DROP INDEX services.services_public_list_idx;
DROP INDEX services.services_public_category_list_idx;
DROP INDEX services.services_public_delivery_mode_list_idx;
CREATE INDEX services_public_order_idx ON services.services (order_number, title)
    WHERE publishing_status = 'published' AND NOT is_deleted;
CREATE INDEX services_public_category_idx ON services.services (category_id, order_number, title)
    WHERE publishing_status = 'published' AND NOT is_deleted;
CREATE INDEX services_public_delivery_mode_idx ON services.services (delivery_mode, order_number, title)
    WHERE publishing_status = 'published' AND NOT is_deleted;
