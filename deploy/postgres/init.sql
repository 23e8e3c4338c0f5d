-- One database per service: each owns its schema and its outbox, nothing is shared.
-- Runs only when the data volume is empty (postgres image entrypoint rule).
CREATE DATABASE bo_gateway;
CREATE DATABASE bo_settlement;
CREATE DATABASE bo_ledger;
CREATE DATABASE bo_compliance_monitor;
CREATE DATABASE bo_audit;
