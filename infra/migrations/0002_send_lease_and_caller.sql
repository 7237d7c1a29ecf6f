-- One expansion run at a time per send. The run that starts a send's expansion takes its lease (a token, and an
-- instant it holds until, moved on with each page it records); a job that finds another run's live lease is put back
-- on the queue with a delay, and a run handing its send over passes the token to its next job. A run that died
-- leaves its lease to expire. Without it, a job delivered twice, or a local-time send's next zone arriving while the
-- last is still being expanded, would page the same send twice at once (the zones' cursors mixed).
--
-- caller: the API key id of the request that made the send, so that a scheduled send's notification record names it
-- too (GET /v1/notifications/{id} answers the caller that made it).
ALTER TABLE sends
    ADD COLUMN lease        uuid,
    ADD COLUMN leased_until timestamptz,
    ADD COLUMN caller       text;
