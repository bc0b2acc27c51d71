-- The application's accounts table, as it was before this change.
CREATE TABLE accounts (
    id bigserial PRIMARY KEY,
    email text NOT NULL,
    display_name text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
