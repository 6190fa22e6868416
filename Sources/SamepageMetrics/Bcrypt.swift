import CCrypt
import Glibc

/// libxcrypt's bcrypt, wrapped once: the check of a password against a hash from a web
/// configuration file's `basic_auth_users` (`$2a$`, `$2b$` or `$2y$`, as htpasswd and
/// exporter-toolkit make them).
///
/// bcrypt is slow on purpose: 2^cost rounds, tens of milliseconds at cost 10 and twice that
/// for each step up. Its callers run it on NIO's blocking pool, never on an event loop.
enum Bcrypt {
    /// `password` hashed with the salt and cost of `setting` (a whole bcrypt hash serves as
    /// the setting); nil when the setting is not bcrypt's (libxcrypt would take "hu" of
    /// "hunter2" for a DES salt), when libxcrypt refuses it, or when the password holds a NUL
    /// (a C string would end there, and "pw\0anything" must not pass for "pw").
    ///
    /// The corresponding C function is `crypt_rn`, with its `crypt_data` on the heap (it is
    /// 32 KiB) and wiped after: it holds the password's intermediate states.
    @available(*, noasync, message: "bcrypt takes tens of milliseconds or more of CPU")
    static func hash(password: [UInt8], setting: String) -> [UInt8]? {
        guard !password.contains(0), ["$2a$", "$2b$", "$2y$"].contains(where: setting.hasPrefix) else { return nil }
        let size = MemoryLayout<crypt_data>.size
        let data = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: MemoryLayout<crypt_data>.alignment)
        data.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        defer {
            explicit_bzero(data, size)
            data.deallocate()
        }
        var phrase = password.map { CChar(bitPattern: $0) }
        phrase.append(0)
        defer { phrase.withUnsafeMutableBytes { explicit_bzero($0.baseAddress!, $0.count) } }
        return phrase.withUnsafeBufferPointer { phrase -> [UInt8]? in
            setting.withCString { setting -> [UInt8]? in
                guard let output = crypt_rn(phrase.baseAddress, setting, data, Int32(size)) else { return nil }
                return Array(UnsafeRawBufferPointer(start: output, count: strlen(output)))
            }
        }
    }

    /// Whether `password` hashes to `hash` under `hash`'s own salt and cost; the two hashes
    /// are compared in constant time.
    @available(*, noasync, message: "bcrypt takes tens of milliseconds or more of CPU")
    static func verify(password: [UInt8], hash: String) -> Bool {
        guard let computed = Self.hash(password: password, setting: hash) else { return false }
        return constantTimeEqual(computed, Array(hash.utf8))
    }

    /// Whether `a` and `b` are equal, in a time that depends on their lengths only.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }
}
