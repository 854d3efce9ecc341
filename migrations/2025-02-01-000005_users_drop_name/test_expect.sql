-- At head, the user written before the zero-downtime rename kept their name and comment.
SELECT count(*) = 1 AS ok
FROM users u JOIN comments c ON c.author_id = u.id
WHERE u.email = 'early.bird@example.com' AND u.display_name = 'Early Bird'
  AND c.body = 'Written before the rename';
