// The types of swift-system this module's API is written in, so that its users need not
// import SystemPackage too (as swift-nio's NIOFS does).
@_exported import struct SystemPackage.Errno
@_exported import struct SystemPackage.FileDescriptor
@_exported import struct SystemPackage.FilePermissions
