CREATE TABLE roles (
    name VARCHAR(50) PRIMARY KEY,
    description VARCHAR(200) NOT NULL
);

INSERT INTO roles (name, description) VALUES
    ('admin', 'can do anything; use sparingly'),
    ('editor', 'edits posts -- but not users');
