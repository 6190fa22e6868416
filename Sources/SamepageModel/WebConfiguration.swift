/// How the metrics endpoint is exposed beyond plain HTTP: TLS and basic authentication, as
/// read from a web configuration file (`metrics.web_config_file`), the format of Prometheus
/// exporter-toolkit (`tls_server_config`, `basic_auth_users`).
///
/// A plain value: the file is read and checked by `SamepageConfig`, and the endpoint
/// (`SamepageMetrics`) loads the certificates and keys it names. Paths are absolute (relative
/// ones in the file were resolved against the file's directory when it was read).
public struct WebConfiguration: Sendable, Equatable {
    /// TLS on the endpoint; nil serves plain HTTP.
    public var tls: TLS?
    /// User names and their bcrypt hashes (`$2a$`, `$2b$` or `$2y$`); empty asks for no
    /// authentication.
    public var basicAuthUsers: [String: String]

    /// No TLS, no authentication: what the endpoint does without a web configuration file.
    public init(tls: TLS? = nil, basicAuthUsers: [String: String] = [:]) {
        self.tls = tls
        self.basicAuthUsers = basicAuthUsers
    }

    /// The endpoint's TLS settings (`tls_server_config`).
    public struct TLS: Sendable, Equatable {
        /// The server's certificate (PEM; the chain may follow the leaf) (`cert_file`).
        public var certificateFile: String
        /// The certificate's private key (PEM) (`key_file`).
        public var keyFile: String
        /// The certificates of the authorities that sign client certificates (PEM)
        /// (`client_ca_file`); set exactly when ``clientAuth`` verifies clients.
        public var clientCAFile: String?
        /// Whether clients must present a certificate (`client_auth_type`).
        public var clientAuth: ClientAuth
        /// The oldest protocol version accepted (`min_version`).
        public var minimumVersion: Version

        /// A server certificate and key; no client certificates; TLS 1.2 and later.
        public init(
            certificateFile: String, keyFile: String, clientCAFile: String? = nil,
            clientAuth: ClientAuth = .noClientCert, minimumVersion: Version = .tls12
        ) {
            self.certificateFile = certificateFile
            self.keyFile = keyFile
            self.clientCAFile = clientCAFile
            self.clientAuth = clientAuth
            self.minimumVersion = minimumVersion
        }
    }

    /// exporter-toolkit's `client_auth_type` values that the endpoint's TLS library can honour,
    /// each raw value as the file spells it (Go's `tls.ClientAuthType` names).
    public enum ClientAuth: String, Sendable, CaseIterable {
        /// No client certificate is asked for.
        case noClientCert = "NoClientCert"
        /// A client certificate, if presented, must verify against `client_ca_file`.
        case verifyClientCertIfGiven = "VerifyClientCertIfGiven"
        /// Every client must present a certificate that verifies against `client_ca_file`.
        case requireAndVerifyClientCert = "RequireAndVerifyClientCert"
    }

    /// The TLS versions `min_version` may name here.
    public enum Version: String, Sendable, CaseIterable {
        /// TLS 1.2 (exporter-toolkit's default).
        case tls12 = "TLS12"
        /// TLS 1.3 only.
        case tls13 = "TLS13"
    }
}
