-- The example application's traffic (../../migrations: users, posts,
-- roles), for `waymark rehearse`: an author's page of posts, then a new
-- post. Each run of this script is one transaction, as in pgbench.
-- seed.sql fills the tables with 1,000 users of 50 posts each.
\set author random(1, 1000)
\set post random(100000, 999999)
BEGIN;
SELECT id, title FROM posts WHERE author_id = :author ORDER BY id DESC LIMIT 20;
INSERT INTO posts (id, author_id, title, body)
  VALUES (:post * 1000 + :client_id, :author, 'post ' || :post, 'written under rehearsal')
  ON CONFLICT (id) DO NOTHING;
END;
