import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { describe, test } from 'node:test';
import { BackupError } from '../../src/errors.ts';
import { checkDatabaseName, derivedName, maxIdentifierBytes, parseDerivedName, restoreRunId, runIdTime } from '../../src/restore/database-names.ts';
import { ScratchSqlFilter } from '../../src/restore/scratch-sql.ts';

void describe('names of the databases a restore makes and keeps', () => {
  const run = restoreRunId(new Date('2026-12-02T00:45:12.345Z'));

  void test('a run id sorts by time and gives its time back', () => {
    assert.equal(run, '20261202t004512z');
    assert.equal(runIdTime(run)?.toISOString(), '2026-12-02T00:45:12.000Z');
    assert.equal(runIdTime('20261302t004512z'), null);
  });

  void test('derived names stay within 63 bytes, and a long name keeps a hash of the whole', () => {
    assert.equal(derivedName('VCDB', 'before', run), 'VCDB_before_20261202t004512z');
    const a = derivedName(`${'x'.repeat(60)}a`, 'before', run);
    const b = derivedName(`${'x'.repeat(60)}b`, 'before', run);
    assert.equal(Buffer.byteLength(a), maxIdentifierBytes);
    assert.notEqual(a, b);
    assert.equal(parseDerivedName(`${'x'.repeat(60)}a`, 'before', a), run);
    assert.equal(parseDerivedName(`${'x'.repeat(60)}b`, 'before', a), null);
  });

  void test("only a database's own derived names are recognised", () => {
    assert.equal(parseDerivedName('VCDB', 'restore', `VCDB_restore_${run}`), run);
    assert.equal(parseDerivedName('VCDB', 'before', `VCDB_restore_${run}`), null);
    assert.equal(parseDerivedName('VCDB', 'before', `OTHER_before_${run}`), null);
    assert.equal(parseDerivedName('VCDB', 'before', 'VCDB_before_yesterday'), null);
  });

  void test('names that need quoting are refused with what to do', () => {
    assert.equal(checkDatabaseName('VCDB', 'vc1'), 'VCDB');
    for (const bad of ['', 'a b', 'x;drop', '"q"', 'x'.repeat(64)]) {
      assert.throws(() => checkDatabaseName(bad, 'vc1: the vcdb database'), (e: unknown) => e instanceof BackupError && e.code === 'RESTORE_DATABASE_NAME' && /vc1: the vcdb database/.test(e.message));
    }
  });
});

void describe('a vPostgres 9.0 `pg_dump -c` dump prepared for an empty database', () => {
  const dump = [
    'SET statement_timeout = 0;',
    "SET client_encoding = 'UTF8';",
    'ALTER TABLE ONLY public.vpx_entity DROP CONSTRAINT vpx_entity_pkey;',
    'ALTER TABLE public.vpx_entity ALTER COLUMN id DROP DEFAULT;',
    'DROP TABLE public.vpx_entity;',
    'DROP PROCEDURAL LANGUAGE plpgsql;',
    'DROP SCHEMA public;',
    'CREATE SCHEMA public;',
    'ALTER SCHEMA public OWNER TO postgres;',
    'SET search_path = public, pg_catalog;',
    'CREATE TABLE vpx_entity (id integer NOT NULL, name text);',
    'ALTER TABLE public.vpx_entity OWNER TO vc;',
    'COPY vpx_entity (id, name) FROM stdin;',
    '1\tDROP TABLE x;',
    '2\tvm',
    '\\.',
    'REVOKE ALL ON SCHEMA public FROM PUBLIC;',
    'GRANT ALL ON SCHEMA public TO PUBLIC;',
    '',
  ].join('\n');

  void test('the clean section goes (DROP SCHEMA kept as IF EXISTS), owners, grants and data stay, rows are counted', async () => {
    const filter = new ScratchSqlFilter({ ownership: 'keep' });
    const out = await text(Readable.from([Buffer.from(dump)]).pipe(filter));
    const kept = out.split('\n').filter((l) => l !== '');
    assert.deepEqual(kept.filter((l) => /DROP/.test(l)), ['DROP SCHEMA IF EXISTS public;', '1\tDROP TABLE x;']);
    assert.ok(kept.includes('ALTER TABLE public.vpx_entity OWNER TO vc;'));
    assert.ok(kept.includes('GRANT ALL ON SCHEMA public TO PUBLIC;'));
    assert.deepEqual([...filter.copiedRows], [['public.vpx_entity', 2]]);
  });
});
