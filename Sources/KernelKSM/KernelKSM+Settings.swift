import LinuxSystem

extension KernelKSM {
    /// A snapshot of every writable knob the kernel has (each one it lacks is nil): what
    /// samepaged saves at start, to ``apply(_:)`` again when it stops.
    ///
    /// - Throws: ``SystemError`` when a knob's file exists but cannot be read or parsed: a
    ///   snapshot with a hole in it could not be restored, so there is none.
    public func settings() throws(SystemError) -> KernelKSMSettings {
        KernelKSMSettings(
            run: try read(.run), pagesToScan: try read(.pagesToScan), sleepMillisecs: try read(.sleepMillisecs),
            maxPageSharing: try read(.maxPageSharing), mergeAcrossNodes: try read(.mergeAcrossNodes),
            useZeroPages: try read(.useZeroPages), smartScan: try read(.smartScan),
            advisorMode: try read(.advisorMode), advisorTargetScanTime: try read(.advisorTargetScanTime),
            advisorMaxCPU: try read(.advisorMaxCPU), advisorMinPagesToScan: try read(.advisorMinPagesToScan),
            advisorMaxPagesToScan: try read(.advisorMaxPagesToScan),
            stableNodeChainsPruneMillisecs: try read(.stableNodeChainsPruneMillisecs)
        )
    }

    /// Writes every knob that `settings` sets, in the order the kernel accepts
    /// (``KernelKSMSettings/writes``), going on past a write the kernel refuses: restoring
    /// the host's settings when samepaged stops is `apply(saved)`.
    ///
    /// - Returns: Every write that failed, in order, each as `write VALUE to PATH` with the
    ///   kernel's errno (`EBUSY` for `max_page_sharing` while pages are shared); empty when
    ///   every knob took its value.
    @available(*, noasync, message: "writing run = 2 unmerges every page before it returns; call it from a thread of your own")
    public func apply(_ settings: KernelKSMSettings) -> [SystemError] {
        var failures: [SystemError] = []
        for write in settings.writes {
            do {
                try self.write(name: write.name, text: write.text)
            } catch {
                failures.append(error)
            }
        }
        return failures
    }
}
