import NIOSSL
import SamepageModel

/// A web configuration's certificate, key or client authorities that cannot be used: the file
/// that holds it and what is wrong.
public struct MetricsSecurityError: Error, Sendable, CustomStringConvertible {
    /// The certificate, key or authorities file.
    public var file: String
    /// What is wrong with it.
    public var message: String

    public init(file: String, message: String) {
        self.file = file
        self.message = message
    }

    /// `FILE: message`.
    public var description: String { "\(file): \(message)" }
}

extension MetricsServer {
    /// What a peer must do before anything is served: speak TLS (``tls``), and name a user
    /// and their password (``authenticator``). Both nil: plain HTTP to anyone who connects.
    public struct Security: Sendable {
        /// The server side of TLS, the first handler of every connection; nil serves plain HTTP.
        public var tls: NIOSSLContext?
        /// Basic authentication of every request; nil asks for none.
        public var authenticator: BasicAuthenticator?

        /// Plain HTTP, no authentication.
        public init(tls: NIOSSLContext? = nil, authenticator: BasicAuthenticator? = nil) {
            self.tls = tls
            self.authenticator = authenticator
        }

        /// Loads what `configuration` names: the certificate chain and key (PEM), the client
        /// authorities, and the users.
        ///
        /// - Throws: The first file that cannot be read or holds nothing usable, and a key
        ///   that is not the certificate's (BoringSSL compares them when the context is made).
        public init(_ configuration: WebConfiguration) throws(MetricsSecurityError) {
            if let tls = configuration.tls { self.tls = try Self.context(tls) }
            if !configuration.basicAuthUsers.isEmpty {
                authenticator = BasicAuthenticator(users: configuration.basicAuthUsers)
            }
        }

        /// `https` with TLS, `http` without.
        public var scheme: String { tls == nil ? "http" : "https" }

        static func context(_ settings: WebConfiguration.TLS) throws(MetricsSecurityError) -> NIOSSLContext {
            let chain = try certificates(settings.certificateFile)
            let key: NIOSSLPrivateKey
            do {
                key = try NIOSSLPrivateKey(file: settings.keyFile, format: .pem)
            } catch {
                throw MetricsSecurityError(file: settings.keyFile, message: "not a PEM private key (\(error))")
            }
            var configuration = TLSConfiguration.makeServerConfiguration(
                certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
            configuration.minimumTLSVersion = settings.minimumVersion == .tls13 ? .tlsv13 : .tlsv12
            if let authorities = settings.clientCAFile {
                configuration.trustRoots = .certificates(try certificates(authorities))
                // A server verifies a client's chain; there is no host name to check it against.
                configuration.certificateVerification =
                    settings.clientAuth == .requireAndVerifyClientCert ? .noHostnameVerification : .optionalVerification
            } else {
                configuration.certificateVerification = .none
            }
            do {
                return try NIOSSLContext(configuration: configuration)
            } catch {
                throw MetricsSecurityError(file: settings.certificateFile, message: "TLS cannot use it with \(settings.keyFile): \(error)")
            }
        }

        private static func certificates(_ file: String) throws(MetricsSecurityError) -> [NIOSSLCertificate] {
            let chain: [NIOSSLCertificate]
            do {
                chain = try NIOSSLCertificate.fromPEMFile(file)
            } catch {
                throw MetricsSecurityError(file: file, message: "not PEM certificates (\(error))")
            }
            guard !chain.isEmpty else { throw MetricsSecurityError(file: file, message: "holds no PEM certificate") }
            return chain
        }
    }
}
