-- A local-time send's zones that hand-offs named (zones_handed: the cron marks them as it hands them over, and each
-- run of a hand-off as it starts) and the zones whose pages a run finished (zones_done). The last hand-off's sweep
-- writes a "skipped" row for each named user no hand-off recorded; a user whose zone was handed over but whose run is
-- not done (it failed for now and comes back from the queue, or its worker died) was skipped as "too late", then left
-- out by that zone's run when it came back: never reached, though in that zone at its time. The sweep leaves such a
-- user to the zone's run.
ALTER TABLE sends
    ADD COLUMN zones_handed text[] NOT NULL DEFAULT '{}',
    ADD COLUMN zones_done text[] NOT NULL DEFAULT '{}';
