-- A local-time send is expanded a zone set at a time: the cron hands each set off as its clocks reach the send's
-- wall-clock time. Each set pages the send's audience (its zones only) with a cursor of its own, the last user id it
-- enqueued, kept here under the set's key (its zones, sorted, comma-separated); an instant send keeps using
-- expanded_through. With one cursor for all, the next set resumed where another set's unfinished run stopped (its
-- users before that were never reached), and a set's job delivered twice paged its users again from the first
-- (counted twice, so the notification's status said some were queued forever).
ALTER TABLE sends
    ADD COLUMN zone_cursors jsonb NOT NULL DEFAULT '{}'::jsonb;
