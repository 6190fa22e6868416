import Foundation
import Synchronization

/// The metrics endpoint's basic authentication (`basic_auth_users` of the web configuration
/// file): a request passes when its `Authorization: Basic` names a user whose bcrypt hash the
/// password matches. Both `/` and `/metrics` ask for it; a request that fails it gets 401 and
/// nothing is rendered for it.
///
/// What bcrypt's cost means here, and how it is bounded:
/// - a check runs on NIO's blocking pool with the renders, never on an event loop;
/// - pairs accepted lately are remembered (``CredentialCache``, salted SHA-256, at most 100):
///   a scraper pays one bcrypt per password per run of the daemon, not one per scrape;
/// - bcrypt runs one check at a time (as exporter-toolkit's does): wrong passwords sent over
///   every connection the endpoint allows keep one core busy, not all of them. Each
///   connection has one request answered at a time, so they queue up to the connection cap;
///   the response deadline still bounds how long each waits;
/// - an unknown user is checked against a decoy hash of the highest cost among the users'
///   (exporter-toolkit's decoy has a fixed cost of 10), so how long a 401 takes does not tell
///   whether the name exists.
public final class BasicAuthenticator: Sendable {
    /// The realm of the `WWW-Authenticate` challenge.
    public static let realm = "samepage"
    /// The challenge sent with a 401.
    public static let challenge = "Basic realm=\"\(realm)\""

    /// bcrypt of a password nobody knows (cost 10); ``decoy(matching:)`` sets its cost.
    static let decoy10 = "$2b$10$8lL7gLSGSlgb07iK.78Fv.kUQgRqQ51B1cutCW515Nwr8V8Xl7BAq"

    /// The decoy at the highest cost of `hashes` (10 when none has a readable cost): bcrypt's
    /// time depends on the cost alone, and the result is never compared equal.
    static func decoy(matching hashes: some Sequence<String>) -> String {
        let costs = hashes.compactMap { hash -> Int? in
            let bytes = Array(hash.utf8)
            guard bytes.count > 6 else { return nil }
            return Int(String(decoding: bytes[4...5], as: UTF8.self)).flatMap { (4...31).contains($0) ? $0 : nil }
        }
        guard let cost = costs.max() else { return decoy10 }
        let digits = cost < 10 ? "0\(cost)" : "\(cost)"
        return "$2b$" + digits + String(decoy10.dropFirst(6))
    }
    /// Longer `Authorization` values are refused unread (a Basic one is a few dozen bytes).
    static let maximumHeaderLength = 1024

    private let users: [String: String]
    private let decoy: String
    private let cache: CredentialCache
    /// Held for each bcrypt: one at a time.
    private let hashing = Mutex<Int>(0)

    /// Users and their bcrypt hashes, as read from the web configuration file (already
    /// checked to be bcrypt); `cacheCapacity` pairs are remembered once accepted.
    public init(users: [String: String], cacheCapacity: Int = 100) {
        self.users = users
        self.decoy = Self.decoy(matching: users.values)
        self.cache = CredentialCache(capacity: cacheCapacity)
    }

    /// How many times bcrypt ran (accepted or not); for tests and figures.
    public var bcryptRuns: Int { hashing.withLock { $0 } }

    /// Whether `authorization` (the request's `Authorization` header, nil when absent) names a
    /// user and their password. Blocks for a bcrypt unless the pair was accepted lately.
    @available(*, noasync, message: "bcrypt takes tens of milliseconds or more of CPU")
    public func isAuthorized(_ authorization: String?) -> Bool {
        guard let (user, password) = Self.credentials(authorization) else { return false }
        let key = cache.key(user: Array(user.utf8), password: password)
        if cache.contains(key) { return true }
        let stored = users[user]
        let matches = hashing.withLock { runs in
            runs += 1
            return Bcrypt.verify(password: password, hash: stored ?? decoy)
        }
        guard matches, stored != nil else { return false }
        cache.insert(key)
        return true
    }

    /// The user and password of a `Basic` authorization (the scheme in any case, RFC 7617);
    /// nil when it is absent, of another scheme, not base64, without a `:`, or a user name
    /// that is not UTF-8.
    static func credentials(_ authorization: String?) -> (user: String, password: [UInt8])? {
        guard let authorization, authorization.utf8.count <= maximumHeaderLength else { return nil }
        let trimmed = authorization.trimmingCharacters(in: .whitespaces)
        guard let space = trimmed.firstIndex(of: " "),
            trimmed[..<space].lowercased() == "basic",
            let decoded = Data(base64Encoded: trimmed[trimmed.index(after: space)...].trimmingCharacters(in: .whitespaces))
        else { return nil }
        let bytes = [UInt8](decoded)
        guard let colon = bytes.firstIndex(of: UInt8(ascii: ":")),
            let user = String(validating: bytes[..<colon], as: UTF8.self)
        else { return nil }
        return (user, Array(bytes[(colon + 1)...]))
    }
}
