DROP TABLE services.featured_categories;
DROP TABLE services.services;
DROP TABLE services.service_categories;
