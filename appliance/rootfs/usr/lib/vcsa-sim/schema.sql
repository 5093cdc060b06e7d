-- First start of a simulated appliance: the VCDB, owned by vc as on a real VCSA. The same
-- tables as src/sim/appliance.ts creates. A 5.5 adds inventory-schema.sql.
\set ON_ERROR_STOP on
CREATE ROLE vc LOGIN;
CREATE DATABASE "VCDB" OWNER vc TEMPLATE template0;
\connect VCDB
SET ROLE vc;
CREATE TABLE vpx_event (seq bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());
CREATE TABLE vpx_entity (id serial PRIMARY KEY, name text NOT NULL UNIQUE, type text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO vpx_entity (name, type) VALUES
  ('Datacenter', 'datacenter'), ('Cluster01', 'cluster'), ('esx01.lab.local', 'host'), ('esx02.lab.local', 'host'),
  ('vm-web01', 'vm'), ('vm-app01', 'vm'), ('vm-db01', 'vm');
