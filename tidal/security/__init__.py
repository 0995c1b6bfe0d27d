"""What keeps a platform to its owner: the data dir's modes and lock, the admin token and where a
local CLI finds it, TLS contexts (docs/security.md)."""
