-- Room in each page for the updates a row gets (issue 15).

-- A customer's message row is written once per state that matters: received, delivery begun, sent
-- (with Genesys's id), delivered or read. Every update but "sent" leaves the indexed columns alone,
-- so with free space in the row's page PostgreSQL makes it a HOT update: no index entries, and the
-- old version is pruned within the page on a later read, without waiting for (auto)vacuum. At the
-- default fillfactor of 100 a full page leaves no room, and every update writes into another page
-- and all five indexes. conversation_mappings gets last_activity_at and the 24-hour window's time
-- on every message, the same way.
ALTER TABLE message_tracking SET (fillfactor = 70);
ALTER TABLE conversation_mappings SET (fillfactor = 70);
