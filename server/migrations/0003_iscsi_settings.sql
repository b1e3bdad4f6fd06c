-- iSCSI settings beyond a group's CHAP and ACL: CHAP on discovery sessions
-- (one row, the same for every node and portal), each group's session
-- parameters and privileges, and an ACL rule's own CHAP users and
-- privileges. Settings are stored as chosen: a setting that is absent
-- (NULL, or missing from a JSON object) takes the engine's default, or for
-- an ACL rule the group's value. Written only by the storage command layer.

CREATE TABLE iscsi_settings (
    id                             INTEGER PRIMARY KEY CHECK (id = 1),
    discovery_chap_mode            TEXT    NOT NULL DEFAULT 'none' CHECK (discovery_chap_mode IN ('none', 'one-way', 'mutual')),
    discovery_chap_user_id         INTEGER REFERENCES chap_users (id),
    discovery_mutual_chap_user_id  INTEGER REFERENCES chap_users (id)
);
INSERT INTO iscsi_settings (id) VALUES (1);

-- JSON objects of the settings an administrator chose.
ALTER TABLE target_groups ADD COLUMN session_settings TEXT NOT NULL DEFAULT '{}';
ALTER TABLE target_groups ADD COLUMN privileges TEXT NOT NULL DEFAULT '{}';

-- NULL chap_mode: the group's CHAP applies to this initiator.
ALTER TABLE acl_rules ADD COLUMN chap_mode TEXT CHECK (chap_mode IN ('one-way', 'mutual'));
ALTER TABLE acl_rules ADD COLUMN chap_user_id INTEGER REFERENCES chap_users (id);
ALTER TABLE acl_rules ADD COLUMN mutual_chap_user_id INTEGER REFERENCES chap_users (id);
-- NULL: the group's privileges; else a JSON object of those that differ.
ALTER TABLE acl_rules ADD COLUMN privileges TEXT;
