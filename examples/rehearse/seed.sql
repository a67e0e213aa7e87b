-- Rows for the example application, after its three migrations:
-- psql -d app -f examples/rehearse/seed.sql
INSERT INTO users (id, email, display_name)
SELECT g, 'user' || g || '@example.com', 'user ' || g FROM generate_series(1, 1000) g;
INSERT INTO posts (id, author_id, title, body)
SELECT g, 1 + g % 1000, 'title ' || g, repeat('words ', 40) FROM generate_series(1, 50000) g;
ANALYZE users;
ANALYZE posts;
