/// The metrics endpoint's web configuration file (`metrics.web_config_file`): exporter-toolkit's
/// YAML, read by `WebConfigurationFile.parse` at start and at every reload.
///
/// Root's file, but often templated by configuration management: a mistake in it must be an
/// error with file and line, never a crash (Yams recurses: depth is bounded before it parses)
/// or a silently unauthenticated endpoint.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWebConfigYAML(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    _ = try? WebConfigurationFile.parse(text: text, file: "web.yml", directory: "/etc/samepage")
    return 0
}
