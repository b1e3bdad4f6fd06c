-- Block storage: nodes and their interfaces, volumes, target groups with
-- their targets, LUNs and ACL rules, CHAP users. Written only by the storage
-- command layer (server/src/storage/commands.rs).

CREATE TABLE nodes (
    id              INTEGER PRIMARY KEY,
    name            TEXT    NOT NULL UNIQUE,
    state           TEXT    NOT NULL DEFAULT 'online' CHECK (state IN ('online', 'offline', 'maintenance')),
    is_local        INTEGER NOT NULL DEFAULT 0,
    last_heartbeat  TEXT    NOT NULL
);

CREATE TABLE interfaces (
    node_id        INTEGER NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    name           TEXT    NOT NULL,
    addresses      TEXT    NOT NULL,  -- JSON array of IP addresses
    traffic_types  TEXT    NOT NULL,  -- JSON array, e.g. ["iscsi", "management"]
    PRIMARY KEY (node_id, name)
);

CREATE TABLE volumes (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    size        INTEGER NOT NULL CHECK (size > 0),
    block_size  INTEGER NOT NULL CHECK (block_size IN (512, 4096)),
    replicas    INTEGER NOT NULL DEFAULT 1 CHECK (replicas BETWEEN 1 AND 3),
    wwn         TEXT    NOT NULL UNIQUE,
    serial      TEXT    NOT NULL UNIQUE,
    node_id     INTEGER NOT NULL REFERENCES nodes (id),
    iops_limit  INTEGER,
    mbps_limit  INTEGER,
    state       TEXT    NOT NULL DEFAULT 'healthy',
    created_at  TEXT    NOT NULL
);

-- Secrets are sealed with the node's key (ChaCha20-Poly1305), never stored in clear.
CREATE TABLE chap_users (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    secret       BLOB    NOT NULL,
    description  TEXT,
    created_at   TEXT    NOT NULL
);

CREATE TABLE target_groups (
    id                   INTEGER PRIMARY KEY,
    name                 TEXT    NOT NULL UNIQUE,
    state                TEXT    NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'stopped')),
    acl_enabled          INTEGER NOT NULL DEFAULT 0,
    chap_mode            TEXT    NOT NULL DEFAULT 'none' CHECK (chap_mode IN ('none', 'one-way', 'mutual')),
    chap_user_id         INTEGER REFERENCES chap_users (id),
    mutual_chap_user_id  INTEGER REFERENCES chap_users (id),
    created_at           TEXT    NOT NULL
);

CREATE TABLE targets (
    id        INTEGER PRIMARY KEY,
    group_id  INTEGER NOT NULL REFERENCES target_groups (id) ON DELETE CASCADE,
    node_id   INTEGER NOT NULL REFERENCES nodes (id),
    iqn       TEXT    NOT NULL UNIQUE,
    portals   TEXT    NOT NULL,  -- JSON array of "ip:port"
    tpg       INTEGER NOT NULL UNIQUE CHECK (tpg BETWEEN 1 AND 65535),
    UNIQUE (group_id, node_id)
);

CREATE TABLE luns (
    group_id   INTEGER NOT NULL REFERENCES target_groups (id) ON DELETE CASCADE,
    lun        INTEGER NOT NULL CHECK (lun BETWEEN 0 AND 255),
    volume_id  INTEGER NOT NULL UNIQUE REFERENCES volumes (id),
    PRIMARY KEY (group_id, lun)
);

CREATE TABLE acl_rules (
    group_id   INTEGER NOT NULL REFERENCES target_groups (id) ON DELETE CASCADE,
    initiator  TEXT    NOT NULL,
    alias      TEXT,
    luns       TEXT,  -- JSON array of LUN ids, NULL for all
    PRIMARY KEY (group_id, initiator)
);
