-- ExecIDs, traders and symbols are identifiers: the books' two indexes compare them byte for
-- byte in the "C" collation instead of through the database's locale (strcoll, which for
-- every comparison also copies both values into terminated buffers). In `perf` of a
-- 1M-message replay into PostgreSQL (database locale C.UTF-8) the B-tree comparisons were
-- about a sixth of the server's time; with "C" its backends used 10% less CPU (three pairs,
-- bench/RESULTS.md, 2026-12-05). Locales that really collate cost more.
-- Equality is unchanged; order changes only where the locale's differs from the bytes', and
-- a prefix search (`LIKE 'X1%'`, what `eod check` reads back) can use the ExecID index.
-- The indexes on these columns are rebuilt, with the table locked until they are (minutes on
-- a table of many millions of rows); the rows are not rewritten.
ALTER TABLE trades
    ALTER COLUMN exec_id TYPE TEXT COLLATE "C",
    ALTER COLUMN trader_id TYPE TEXT COLLATE "C",
    ALTER COLUMN symbol TYPE TEXT COLLATE "C";
