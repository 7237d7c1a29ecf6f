-- The users a local-time send's zone hand-offs have enqueued, one row each. Each zone set pages its own users with a
-- cursor of its own (0003), so a user whose time zone changed (PUT /v1/users/{id}) from a zone already handed over to
-- one handed over later was paged by both: enqueued twice, and counted twice in sends.recipients and the
-- notification's delivery_count, so the status said one delivery was queued forever. The worker leaves out of each
-- page of a zone hand-off the users recorded here, and records a page's users in the transaction that moves its
-- cursor and count, under the send's lease: a page enqueued by a run that died before recording it is enqueued again
-- under the same delivery keys and counted once, as before. An instant send pages everyone with one cursor (each user
-- once): it records nothing here.
--
-- No foreign key to users: a user deleted and made again under the same id after the hand-off was reached already.
CREATE TABLE send_recipients (
    send_id uuid NOT NULL,
    user_id text NOT NULL,
    CONSTRAINT send_recipients_pkey PRIMARY KEY (send_id, user_id),
    CONSTRAINT send_recipients_send_id_fkey FOREIGN KEY (send_id) REFERENCES sends (id) ON DELETE CASCADE
);

-- Kept while a hand-off may still need them: sends.recipients_kept says a send has rows here; the cron deletes them
-- some days after the send's schedule is done (AudienceRepository.purge_send_recipients), so the table holds the
-- recipients of recent local-time sends only, not one row per recipient of every send ever made.
ALTER TABLE sends ADD COLUMN recipients_kept boolean NOT NULL DEFAULT false;
CREATE INDEX sends_recipients_kept_idx ON sends (id) WHERE recipients_kept;
