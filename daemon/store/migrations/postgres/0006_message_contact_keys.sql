-- 6: a message keeps its contact by the contact's own key (contacts.id), which never changes,
-- not by the partner's contact_id, which can; messages whose contact is not known yet are held
-- back per export feed until it is.
ALTER TABLE messages ADD COLUMN contact_key BIGINT;
UPDATE messages SET contact_key = c.id FROM contacts c
    WHERE c.partner = messages.partner AND c.contact_id = messages.contact_id;
CREATE INDEX messages_without_contact ON messages(partner, contact_id) WHERE contact_key IS NULL;
CREATE TABLE held_messages (
    feed       TEXT NOT NULL,
    message_id BIGINT NOT NULL,
    PRIMARY KEY (feed, message_id)
);
