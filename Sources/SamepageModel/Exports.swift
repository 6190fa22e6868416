// The kernel KSM's configuration is a value of the engine's module, so that the sysfs driver
// (KernelKSM) reads it without depending on the model; its wire form is the model's
// (`KernelKSMConfiguration+Codable.swift`). Re-exported so that users of the model see it as
// before.
@_exported import struct SamepageCore.KernelKSMConfiguration
