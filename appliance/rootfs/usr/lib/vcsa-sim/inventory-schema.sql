-- First start of a simulated VCSA 5.5: the Inventory Service database, owned by vc. The same
-- table as src/sim/appliance.ts creates.
\set ON_ERROR_STOP on
CREATE DATABASE invsvc OWNER vc TEMPLATE template0;
\connect invsvc
SET ROLE vc;
CREATE TABLE inv_progress (id int PRIMARY KEY CHECK (id = 1), seq bigint NOT NULL, synced_at timestamptz NOT NULL DEFAULT now());
INSERT INTO inv_progress (id, seq) VALUES (1, 0);
