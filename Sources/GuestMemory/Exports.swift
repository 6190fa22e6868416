// What this module's API is written in, from LinuxSystem: its users (the agent, the CLI)
// name these without importing LinuxSystem themselves, as swift-nio's NIOFS does for
// swift-system's types.
@_exported import struct LinuxSystem.SystemError
@_exported import struct LinuxSystem.FileIdentity
@_exported import struct SystemPackage.Errno
@_exported import func LinuxSystem.readWholeFile
