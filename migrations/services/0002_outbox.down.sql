DROP TABLE services.outbox;
