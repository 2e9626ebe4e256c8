DROP TABLE content.outbox;
DROP TABLE content.content_storage_backend;
DROP TABLE content.content_virus_scan;
DROP TABLE content.content_access_log;
DROP TABLE content.content;
