-- Conversation context an agent can read (issue 14).

-- A short preview of each message (the first 100 characters of its text, or what it was: "[image]
-- caption", a template's name, the choices offered). A customer's reply or reaction names an
-- earlier message only by its wamid; this is what the agent is shown instead.
ALTER TABLE message_tracking ADD COLUMN preview TEXT;
