CREATE TABLE "user" (
    id SERIAL PRIMARY KEY,
    email VARCHAR(255) NOT NULL UNIQUE,
    hashed_password VARCHAR NOT NULL,
    full_name VARCHAR(255),
    is_active BOOLEAN NOT NULL DEFAULT TRUE
);
CREATE TABLE item (
    id SERIAL PRIMARY KEY,
    title VARCHAR(255) NOT NULL,
    description VARCHAR(255),
    owner_id INTEGER NOT NULL REFERENCES "user" (id) ON DELETE CASCADE
);
CREATE INDEX ix_item_owner_id ON item (owner_id);
