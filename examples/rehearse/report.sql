-- A reporting query, run now and then by `--reporter`: it reads every
-- post, holding its table's ACCESS SHARE lock for as long as it takes,
-- which is what makes an ALTER TABLE queue and the application behind it.
BEGIN;
SELECT u.display_name, count(p.id), max(length(p.body))
  FROM users u LEFT JOIN posts p ON p.author_id = u.id
 GROUP BY u.display_name;
SELECT pg_sleep(1);
END;
