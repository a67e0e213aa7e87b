CREATE TABLE posts (
    id INTEGER PRIMARY KEY,
    author_id INTEGER NOT NULL REFERENCES users (id),
    title VARCHAR(200) NOT NULL,
    body TEXT
);

/* Posts are listed per author, newest first. */
CREATE INDEX posts_by_author ON posts (author_id, id);
