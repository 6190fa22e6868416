// The control API; see docs/control-protocol.md.
