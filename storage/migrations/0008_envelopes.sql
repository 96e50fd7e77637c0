-- Envelopes: a Kafka message on llm.events may carry many events, one per line
-- (header llmpulse.envelope; docs/event-schema.md#envelopes). Rows keep the envelope's
-- partition and offset, and say which line of it they came from.
-- envelope_line is 1-based; 0 means the message was not an envelope line: a single
-- event as before, or (in dead_letters) an envelope refused as a whole.
ALTER TABLE {db}.llm_events
    ADD COLUMN IF NOT EXISTS envelope_line UInt32 DEFAULT 0 AFTER kafka_offset;

-- Two bad lines of one envelope share (topic, partition, offset): the line joins the
-- sorting key so they stay two dead letters instead of collapsing into one. A column
-- added to the sorting key cannot carry a DEFAULT expression; UInt32's own default is 0,
-- which is what rows stored before this migration mean.
ALTER TABLE {db}.dead_letters
    ADD COLUMN IF NOT EXISTS envelope_line UInt32 AFTER offset,
    MODIFY ORDER BY (topic, partition, offset, envelope_line);
