-- no-transaction
DROP INDEX CONCURRENTLY posts_by_title;
