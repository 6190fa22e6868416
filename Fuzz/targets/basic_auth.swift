/// The `Authorization` header of a request to the metrics endpoint, as
/// `BasicAuthenticator` reads it: from any client that can reach the endpoint, before anything
/// else is done for it.
///
/// The header is split and decoded (scheme, base64, `user:password`), then checked against one
/// user whose bcrypt hash has cost 4 (so a run tries many inputs), as the endpoint does; the
/// seed `valid-form` is that user with its password (`s3cret`, hashed once by Python's crypt).
let authenticator = BasicAuthenticator(users: ["prometheus": "$2b$04$1aXhjXrqRsPN8/E7nWfdTOBnhyKJ8HT0djSgFmFxEL4WpyT1sFozW"])

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzBasicAuth(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let header = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if BasicAuthenticator.credentials(header) != nil { _ = authenticator.isAuthorized(header) }
    return 0
}
