-- Expand: notes gain body_len, filled by the backfill job notes_body_len.
CREATE TABLE notes (
    id bigint PRIMARY KEY,
    body text NOT NULL,
    body_len integer
);
INSERT INTO notes (id, body) SELECT g, repeat('x', g % 17) FROM generate_series(1, 500) g;
