-- no-transaction
-- The change to rehearse: posts found by title. Built CONCURRENTLY, it
-- passes a rehearsal; as a plain CREATE INDEX it holds off every new post
-- while it builds (try it: the verdict names this statement).
CREATE INDEX CONCURRENTLY posts_by_title ON posts (title);