-- A local-time send is expanded a few zones at a time: the cron hands zones off as their clocks reach the send's
-- wall-clock time. Each zone pages the send's audience (its users only) with a cursor of its own, the last user id
-- it enqueued, kept here under the zone's name; an instant send keeps using expanded_through. With one cursor for
-- all, the next zones resumed where other zones' unfinished run stopped (their users before it were never reached),
-- and a hand-off's job delivered twice paged its users again from the first (counted twice, so the notification's
-- status said some were queued forever).
ALTER TABLE sends
    ADD COLUMN zone_cursors jsonb NOT NULL DEFAULT '{}'::jsonb;
