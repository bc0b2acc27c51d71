-- The migrations of sluice-migrate's own documentation examples and unit tests.
CREATE TABLE notes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    body text NOT NULL
);
