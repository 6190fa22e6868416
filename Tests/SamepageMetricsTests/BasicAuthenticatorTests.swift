import Foundation
import Testing
@testable import SamepageMetrics

/// Fixed bcrypt hashes, made once by Python's crypt module (never by the code under test).
enum KnownHashes {
    static let password = "s3cret pw"
    /// bcrypt("s3cret pw"), cost 4.
    static let cost4 = "$2b$04$wASTi/ua4eizf.PxBXJoreaQzes2DidcLKYcZamRVcztpXCDmpyZ."
    /// The same under htpasswd's prefix: $2y$ and $2b$ agree on ASCII passwords.
    static let cost4y = "$2y$04$wASTi/ua4eizf.PxBXJoreaQzes2DidcLKYcZamRVcztpXCDmpyZ."

    static func basic(_ user: String, _ password: String) -> String {
        "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
    }
}

@Suite("Basic authentication: bcrypt through libxcrypt, the cache of accepted pairs")
struct BasicAuthenticatorTests {
    @Test func bcryptAgreesWithPython() {
        let password = Array(KnownHashes.password.utf8)
        #expect(Bcrypt.hash(password: password, setting: KnownHashes.cost4) == Array(KnownHashes.cost4.utf8))
        #expect(Bcrypt.verify(password: password, hash: KnownHashes.cost4))
        #expect(Bcrypt.verify(password: password, hash: KnownHashes.cost4y))
        #expect(!Bcrypt.verify(password: Array("s3cret pW".utf8), hash: KnownHashes.cost4))
        #expect(!Bcrypt.verify(password: [], hash: KnownHashes.cost4))
        // A NUL would end the C string: "s3cret pw\0more" must not pass for "s3cret pw".
        #expect(!Bcrypt.verify(password: password + [0] + Array("more".utf8), hash: KnownHashes.cost4))
        // Not a hash libxcrypt takes.
        #expect(Bcrypt.hash(password: password, setting: "hunter2") == nil)
        #expect(!Bcrypt.verify(password: password, hash: "$2b$04$short"))
    }

    @Test func constantTimeEqual() {
        #expect(Bcrypt.constantTimeEqual([1, 2, 3], [1, 2, 3]))
        #expect(!Bcrypt.constantTimeEqual([1, 2, 3], [1, 2, 4]))
        #expect(!Bcrypt.constantTimeEqual([1, 2, 3], [1, 2]))
    }

    @Test("Authorization headers", arguments: [
        ("Basic cHJvbWV0aGV1czpzM2NyZXQgcHc=", "prometheus", "s3cret pw"),
        ("basic cHJvbWV0aGV1czpzM2NyZXQgcHc=", "prometheus", "s3cret pw"),
        ("  BASIC   cHJvbWV0aGV1czpzM2NyZXQgcHc=  ", "prometheus", "s3cret pw"),
        // The password may hold colons; the user name ends at the first.
        ("Basic " + Data("u:p:q".utf8).base64EncodedString(), "u", "p:q"),
        ("Basic " + Data("u:".utf8).base64EncodedString(), "u", ""),
    ])
    func credentials(header: String, user: String, password: String) {
        let parsed = BasicAuthenticator.credentials(header)
        #expect(parsed?.user == user)
        #expect(parsed?.password == Array(password.utf8))
    }

    @Test("Headers that carry no credentials", arguments: [
        "", "Basic", "Basic ", "Bearer cHJvbWV0aGV1czpzM2NyZXQgcHc=", "Basic not base64!",
        "Basic " + Data("no colon".utf8).base64EncodedString(),
        "Basic " + Data([0xFF, 0xFE, UInt8(ascii: ":"), UInt8(ascii: "p")]).base64EncodedString(),
        "Basic " + String(repeating: "A", count: 2000),
    ])
    func noCredentials(header: String) {
        #expect(BasicAuthenticator.credentials(header) == nil)
    }

    @Test func rightWrongAndUnknown() {
        let authenticator = BasicAuthenticator(users: ["prometheus": KnownHashes.cost4, "grafana": KnownHashes.cost4y])
        #expect(!authenticator.isAuthorized(nil))
        #expect(authenticator.bcryptRuns == 0)
        #expect(!authenticator.isAuthorized(KnownHashes.basic("prometheus", "wrong")))
        #expect(authenticator.bcryptRuns == 1)
        #expect(authenticator.isAuthorized(KnownHashes.basic("prometheus", KnownHashes.password)))
        #expect(authenticator.isAuthorized(KnownHashes.basic("grafana", KnownHashes.password)))
        #expect(authenticator.bcryptRuns == 3)
        // An unknown user costs a bcrypt (of the decoy) like a known one, and never passes,
        // not even with a password that some user has.
        #expect(!authenticator.isAuthorized(KnownHashes.basic("nobody", KnownHashes.password)))
        #expect(authenticator.bcryptRuns == 4)
        // A user's password does not open another user's name.
        #expect(!authenticator.isAuthorized(KnownHashes.basic("Prometheus", KnownHashes.password)))
    }

    @Test func decoyCostsWhatTheDearestUserCosts() {
        #expect(BasicAuthenticator.decoy(matching: [KnownHashes.cost4]) == "$2b$04$8lL7gLSGSlgb07iK.78Fv.kUQgRqQ51B1cutCW515Nwr8V8Xl7BAq")
        #expect(BasicAuthenticator.decoy(matching: [KnownHashes.cost4, "$2y$12$" + String(repeating: "a", count: 53)])
            == "$2b$12$8lL7gLSGSlgb07iK.78Fv.kUQgRqQ51B1cutCW515Nwr8V8Xl7BAq")
        #expect(BasicAuthenticator.decoy(matching: []) == BasicAuthenticator.decoy10)
        // The decoy at cost 4 is a hash libxcrypt takes (and that nothing matches).
        let decoy = BasicAuthenticator.decoy(matching: [KnownHashes.cost4])
        #expect(Bcrypt.hash(password: Array("x".utf8), setting: decoy)?.count == 60)
        #expect(!Bcrypt.verify(password: Array(KnownHashes.password.utf8), hash: decoy))
    }

    @Test func acceptedPairsAreRememberedWrongOnesNot() {
        let authenticator = BasicAuthenticator(users: ["prometheus": KnownHashes.cost4])
        let right = KnownHashes.basic("prometheus", KnownHashes.password)
        for _ in 0..<5 { #expect(authenticator.isAuthorized(right)) }
        #expect(authenticator.bcryptRuns == 1)
        for _ in 0..<3 { #expect(!authenticator.isAuthorized(KnownHashes.basic("prometheus", "wrong"))) }
        #expect(authenticator.bcryptRuns == 4)
    }

    @Test func cacheIsBounded() {
        let users = Dictionary(uniqueKeysWithValues: (0..<3).map { ("user\($0)", KnownHashes.cost4) })
        let authenticator = BasicAuthenticator(users: users, cacheCapacity: 2)
        for index in 0..<3 { #expect(authenticator.isAuthorized(KnownHashes.basic("user\(index)", KnownHashes.password))) }
        #expect(authenticator.bcryptRuns == 3)
        // user0, the oldest, was dropped; user2 is still remembered.
        #expect(authenticator.isAuthorized(KnownHashes.basic("user2", KnownHashes.password)))
        #expect(authenticator.bcryptRuns == 3)
        #expect(authenticator.isAuthorized(KnownHashes.basic("user0", KnownHashes.password)))
        #expect(authenticator.bcryptRuns == 4)
    }

    @Test func cacheKeysSeparateUserFromPassword() {
        let cache = CredentialCache(capacity: 4)
        let a = cache.key(user: Array("ab".utf8), password: Array("c".utf8))
        let b = cache.key(user: Array("a".utf8), password: Array("bc".utf8))
        #expect(a != b)
        #expect(a == cache.key(user: Array("ab".utf8), password: Array("c".utf8)))
        // Another cache has another salt.
        #expect(a != CredentialCache(capacity: 4).key(user: Array("ab".utf8), password: Array("c".utf8)))
        cache.insert(a)
        #expect(cache.contains(a))
        #expect(!cache.contains(b))
        #expect(cache.count == 1)
    }
}
