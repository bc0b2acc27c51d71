CREATE OR REPLACE VIEW note_lengths AS SELECT id, length(body) AS body_length FROM notes;
