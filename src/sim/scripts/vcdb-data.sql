-- Grows a simulated VCDB to about :target_mb MiB (pg_database_size) with data shaped like
-- vCenter's: performance statistics (vpx_hist_stat1..4, the bulk of a real VCDB), events and
-- their arguments (vpx_event, vpx_event_arg) and tasks (vpx_task). Values vary like real ones
-- (counters, entities, users, times, error texts), so the dump compresses about as well as a
-- real one (gzip -6: 5-10x), not like zeros or one repeated row.
--
-- Run as a superuser connection to the VCDB, before vpxd starts:
--   psql -v target_mb=N -v owner=vc -d VCDB -f vcdb-data.sql
-- Rows are made server-side (INSERT ... SELECT generate_series) in batches until the database
-- reaches the target; indexes are built last. Deterministic for a given target (setseed).
-- The same file runs in the in-process simulator (src/sim/vcdb-data.ts) and in the appliance
-- image (vcsa-sim-init, VCSA_SIM_VCDB_MB).
\set ON_ERROR_STOP on
SET client_min_messages = warning;
SET synchronous_commit = off;
SELECT set_config('vcsa_sim.target_mb', :'target_mb', false);
SET ROLE :"owner";

CREATE TABLE IF NOT EXISTS vpx_hist_stat1 (counter_id integer NOT NULL, time_id bigint NOT NULL, stat_val bigint NOT NULL);
CREATE TABLE IF NOT EXISTS vpx_hist_stat2 (counter_id integer NOT NULL, time_id bigint NOT NULL, stat_val bigint NOT NULL);
CREATE TABLE IF NOT EXISTS vpx_hist_stat3 (counter_id integer NOT NULL, time_id bigint NOT NULL, stat_val bigint NOT NULL);
CREATE TABLE IF NOT EXISTS vpx_hist_stat4 (counter_id integer NOT NULL, time_id bigint NOT NULL, stat_val bigint NOT NULL);
ALTER TABLE vpx_event
  ADD COLUMN IF NOT EXISTS chain_id bigint,
  ADD COLUMN IF NOT EXISTS event_type text,
  ADD COLUMN IF NOT EXISTS extended_class text,
  ADD COLUMN IF NOT EXISTS username text,
  ADD COLUMN IF NOT EXISTS category text,
  ADD COLUMN IF NOT EXISTS vm_id integer,
  ADD COLUMN IF NOT EXISTS vm_name text,
  ADD COLUMN IF NOT EXISTS host_id integer,
  ADD COLUMN IF NOT EXISTS host_name text,
  ADD COLUMN IF NOT EXISTS computeresource_name text,
  ADD COLUMN IF NOT EXISTS datacenter_name text,
  ADD COLUMN IF NOT EXISTS datastore_name text;
CREATE TABLE IF NOT EXISTS vpx_event_arg (
  event_id bigint NOT NULL, arg_id integer NOT NULL, arg_type text NOT NULL, arg_data text,
  obj_type integer, obj_name text);
CREATE TABLE IF NOT EXISTS vpx_task (
  task_id bigint NOT NULL, name text NOT NULL, descriptionid text NOT NULL, entity_id integer,
  entity_type integer, entity_name text, username text, complete_state text NOT NULL,
  cancelled smallint NOT NULL, cancelable smallint NOT NULL, error_data text, result_data text,
  queue_time timestamptz NOT NULL, start_time timestamptz, complete_time timestamptz,
  event_chain_id bigint, host_name text, datacenter_name text);

DO $fill$
DECLARE
  target bigint := current_setting('vcsa_sim.target_mb')::bigint * 1024 * 1024;
  -- Indexes and the last batch come on top of what the loop sees: stop a little early.
  loop_target bigint := target * 0.84;
  batch integer := 0;
  ev0 bigint;
  task0 bigint;
  t0 bigint;
  -- Rows per batch (about 6 MiB of table pages): statistics dominate, as in a real VCDB.
  stat_rows constant integer := 60000;
  event_rows constant integer := 9000;
  task_rows constant integer := 2000;
  base timestamptz := date_trunc('day', now()) - interval '120 days';
BEGIN
  PERFORM setseed(0.11);
  SELECT coalesce(max(time_id), 0) INTO t0 FROM vpx_hist_stat1;
  SELECT coalesce(max(seq), 0) INTO ev0 FROM vpx_event;
  SELECT coalesce(max(task_id), 0) INTO task0 FROM vpx_task;
  WHILE pg_database_size(current_database()) < loop_target LOOP
    -- Level 1 (5-minute samples): 60 counters x 10 entities per sample time; the rolled-up
    -- levels (30-minute, 2-hour, daily) keep fewer of the same samples.
    WITH s AS MATERIALIZED (
      SELECT 2 + (g % 60) * 3 AS c, t0 + 1 + (g / 600) AS t,
        CASE (g % 60) % 6
          WHEN 0 THEN (random() * random() * 10000)::bigint                -- cpu.usage, hundredths of %
          WHEN 1 THEN 1048576 * (1 + (g % 7)) + (random() * 4096)::bigint  -- mem, KiB
          WHEN 2 THEN (random() * 120)::bigint                             -- disk latency, ms
          WHEN 3 THEN ((random() ^ 4) * 125000)::bigint                    -- net, KBps
          WHEN 4 THEN 100 * ((g / 60) % 10)                                -- power state / config
          ELSE 0                                                           -- idle counters report 0
        END AS v
      FROM generate_series(0, stat_rows - 1) AS g),
    l1 AS (INSERT INTO vpx_hist_stat1 SELECT c, t, v FROM s),
    l2 AS (INSERT INTO vpx_hist_stat2 SELECT c, t / 6, v FROM s WHERE t % 6 = 0),
    l3 AS (INSERT INTO vpx_hist_stat3 SELECT c, t / 24, v FROM s WHERE t % 24 = 0)
    INSERT INTO vpx_hist_stat4 SELECT c, t / 288, v FROM s WHERE t % 96 = 0;
    t0 := t0 + stat_rows / 600;

    INSERT INTO vpx_event (seq, at, chain_id, event_type, extended_class, username, category,
      vm_id, vm_name, host_id, host_name, computeresource_name, datacenter_name, datastore_name)
    SELECT ev0 + g,
      base + (ev0 + g) * interval '450 ms',
      ev0 + g - (g % 3),
      (ARRAY['vim.event.VmPoweredOnEvent', 'vim.event.VmPoweredOffEvent', 'vim.event.UserLoginSessionEvent',
             'vim.event.UserLogoutSessionEvent', 'vim.event.AlarmStatusChangedEvent', 'vim.event.VmReconfiguredEvent',
             'vim.event.TaskEvent', 'vim.event.VmMigratedEvent', 'vim.event.DrsVmPoweredOnEvent',
             'vim.event.VmBeingHotMigratedEvent', 'vim.event.HostConnectionLostEvent', 'vim.event.EventEx'])[1 + (random() * 11)::int],
      CASE WHEN g % 9 = 0 THEN 'com.vmware.vc.VmDiskConsolidatedEvent' END,
      (ARRAY['VSPHERE.LOCAL\Administrator', 'root', 'vpxd-extension-' || (g % 4), 'LAB\svc-veeam', 'LAB\jdoe', 'LAB\asmith', 'com.vmware.vsan.health'])[1 + (random() * 6)::int],
      (ARRAY['info', 'info', 'info', 'warning', 'error', 'user'])[1 + (random() * 5)::int],
      100 + v, 'vm-' || (ARRAY['web', 'app', 'db', 'file', 'build', 'test'])[1 + v % 6] || lpad((v / 6)::text, 3, '0'),
      10 + v % 32, 'esx' || lpad((v % 32)::text, 2, '0') || '.lab.local',
      'Cluster' || lpad((v % 4)::text, 2, '0'), 'Datacenter', 'datastore-' || (v % 12)
    FROM (SELECT g, (random() * 1500)::int AS v FROM generate_series(1, event_rows) AS g) e;
    INSERT INTO vpx_event_arg (event_id, arg_id, arg_type, arg_data, obj_type, obj_name)
    SELECT ev0 + g, a,
      (ARRAY['vm', 'host', 'computeResource', 'datacenter', 'ds'])[a],
      CASE a WHEN 1 THEN 'vm-' || (100 + (g * 7) % 1500) WHEN 2 THEN 'host-' || (10 + g % 32) ELSE NULL END,
      a, CASE a WHEN 1 THEN 'vm-' || lpad(((g * 7) % 1500)::text, 4, '0') WHEN 2 THEN 'esx' || lpad((g % 32)::text, 2, '0') || '.lab.local' WHEN 3 THEN 'Cluster' || (g % 4) ELSE 'Datacenter' END
    FROM generate_series(1, event_rows) AS g, generate_series(1, 1 + (g * 7919) % 4) AS a;

    INSERT INTO vpx_task (task_id, name, descriptionid, entity_id, entity_type, entity_name, username,
      complete_state, cancelled, cancelable, error_data, result_data, queue_time, start_time, complete_time,
      event_chain_id, host_name, datacenter_name)
    SELECT task0 + g, t.name, t.name, 100 + v, 0, 'vm-' || lpad(v::text, 4, '0'),
      (ARRAY['VSPHERE.LOCAL\Administrator', 'LAB\svc-veeam', 'LAB\jdoe', 'vpxd-extension'])[1 + (random() * 3)::int],
      CASE WHEN r < 0.93 THEN 'success' WHEN r < 0.98 THEN 'error' ELSE 'running' END,
      0, (g % 2)::smallint,
      CASE WHEN r >= 0.93 AND r < 0.98 THEN '<obj xsi:type="LocalizedMethodFault"><fault xsi:type="' ||
        (ARRAY['InvalidState', 'FileLocked', 'TaskInProgress', 'NoPermission'])[1 + (random() * 3)::int] ||
        '"></fault><localizedMessage>The operation is not allowed in the current state of vm-' || v || '.</localizedMessage></obj>' END,
      CASE WHEN r < 0.93 THEN '<obj xsi:type="ManagedObjectReference" type="Task">task-' || (task0 + g) || '</obj>' END,
      base + (task0 + g) * interval '2 s', base + (task0 + g) * interval '2 s' + interval '40 ms',
      base + (task0 + g) * interval '2 s' + (random() * 90000)::int * interval '1 ms',
      ev0 + (g * 4) % event_rows, 'esx' || lpad((v % 32)::text, 2, '0') || '.lab.local', 'Datacenter'
    FROM (SELECT g, random() AS r, (random() * 1500)::int AS v,
            (ARRAY['vim.VirtualMachine.powerOn', 'vim.VirtualMachine.powerOff', 'vim.VirtualMachine.reconfigure',
                   'vim.VirtualMachine.createSnapshot', 'vim.VirtualMachine.removeSnapshot', 'vim.VirtualMachine.migrate',
                   'vim.VirtualMachine.clone', 'vim.host.ConnectHost', 'vim.Datastore.refresh'])[1 + (random() * 8)::int] AS name
          FROM generate_series(1, task_rows) AS g) t(g, r, v, name);
    ev0 := ev0 + event_rows;
    task0 := task0 + task_rows;
    batch := batch + 1;
  END LOOP;
  RAISE NOTICE 'vcsa-sim: % batches', batch;
END
$fill$;

-- As on a real VCDB, the big tables are indexed: built once, after the load.
CREATE INDEX IF NOT EXISTS vpx_hist_stat1_time ON vpx_hist_stat1 (time_id, counter_id);
CREATE INDEX IF NOT EXISTS vpx_hist_stat2_time ON vpx_hist_stat2 (time_id, counter_id);
CREATE INDEX IF NOT EXISTS vpx_hist_stat3_time ON vpx_hist_stat3 (time_id, counter_id);
CREATE INDEX IF NOT EXISTS vpx_hist_stat4_time ON vpx_hist_stat4 (time_id, counter_id);
CREATE UNIQUE INDEX IF NOT EXISTS vpx_event_arg_pk ON vpx_event_arg (event_id, arg_id);
CREATE UNIQUE INDEX IF NOT EXISTS vpx_task_pk ON vpx_task (task_id);
ANALYZE vpx_hist_stat1, vpx_hist_stat2, vpx_hist_stat3, vpx_hist_stat4, vpx_event, vpx_event_arg, vpx_task;
SELECT pg_database_size(current_database());
