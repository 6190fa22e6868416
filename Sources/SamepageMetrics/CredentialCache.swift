import CCrypt
import Glibc
import Synchronization

/// The (user, password) pairs bcrypt accepted lately, so that a scraper's every request does
/// not cost a bcrypt: exporter-toolkit's cache, for successes only (a flood of wrong passwords
/// cannot push a scraper's entry out, and a wrong password is never remembered as right).
///
/// Only a salted SHA-256 of each pair is kept: the salt is random for each cache (each run of
/// the daemon), the user's length comes first so that no two pairs run together. At most
/// ``capacity`` entries; one more drops the oldest.
final class CredentialCache: Sendable {
    /// A SHA-256 digest; equal digests compare in constant time.
    struct Digest: Hashable, Sendable {
        let words: [UInt64]

        static func == (lhs: Digest, rhs: Digest) -> Bool {
            guard lhs.words.count == rhs.words.count else { return false }
            var difference: UInt64 = 0
            for index in lhs.words.indices { difference |= lhs.words[index] ^ rhs.words[index] }
            return difference == 0
        }

        func hash(into hasher: inout Hasher) {
            hasher.combine(words)
        }
    }

    /// Entries kept at most (exporter-toolkit keeps 100).
    let capacity: Int
    private let salt: [UInt8]
    private let entries = Mutex<(set: Set<Digest>, order: [Digest])>(([], []))

    init(capacity: Int = 100) {
        self.capacity = max(1, capacity)
        var generator = SystemRandomNumberGenerator()
        salt = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }

    /// The key of `user` and `password`: SHA-256 of the salt, the user's length (8 bytes),
    /// the user and the password. The corresponding C function is libcrypto's `SHA256`.
    func key(user: [UInt8], password: [UInt8]) -> Digest {
        var message = salt
        withUnsafeBytes(of: UInt64(user.count).littleEndian) { message.append(contentsOf: $0) }
        message += user
        message += password
        var digest = [UInt8](repeating: 0, count: 32)
        message.withUnsafeBufferPointer { input in
            digest.withUnsafeMutableBufferPointer { output in
                _ = SHA256(input.baseAddress, input.count, output.baseAddress)
            }
        }
        message.withUnsafeMutableBytes { explicit_bzero($0.baseAddress!, $0.count) }
        let words = stride(from: 0, to: 32, by: 8).map { offset in
            digest[offset..<(offset + 8)].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        }
        return Digest(words: words)
    }

    /// Whether bcrypt accepted this pair lately.
    func contains(_ key: Digest) -> Bool {
        entries.withLock { $0.set.contains(key) }
    }

    /// Remembers a pair bcrypt accepted, dropping the oldest entry when full.
    func insert(_ key: Digest) {
        entries.withLock { entries in
            guard entries.set.insert(key).inserted else { return }
            entries.order.append(key)
            if entries.order.count > capacity {
                entries.set.remove(entries.order.removeFirst())
            }
        }
    }

    /// How many pairs are remembered.
    var count: Int { entries.withLock { $0.order.count } }
}
