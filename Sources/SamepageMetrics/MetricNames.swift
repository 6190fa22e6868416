import SamepageCore
import SamepageModel

/// One metric family: its full name and its HELP text. The type follows from the name
/// (a `_total` suffix is a counter) and from the call that writes it.
struct Family {
    let name: String
    let help: String

    init(_ name: String, _ help: String) {
        self.name = name
        self.help = help
    }

    /// The family of the same name under `samepage_guest_` (per guest) rather than
    /// `samepage_`, its HELP saying so.
    var perGuest: Family {
        Family("samepage_guest_" + name.dropFirst("samepage_".count), help + " (per guest)")
    }
}

/// The engine's counters (the kernel's `/sys/kernel/mm/ksm/*` meanings, the keys of
/// ``Counters/CodingKeys``) in bytes: a gauge for pages in some state now, a `_total`
/// counter for what only grows. Pages are of ``pageSize``.
enum EngineFamily {
    static func family(_ key: Counters.CodingKeys) -> Family {
        switch key {
        case .pagesShared: Family("samepage_shared_bytes", "Distinct merged contents (stable-tree nodes, KSM's pages_shared), in bytes")
        case .pagesSharing: Family("samepage_sharing_bytes", "Bytes merged into a stable node beyond its first (KSM's pages_sharing): what sharing saves")
        case .pagesUnshared: Family("samepage_unshared_bytes", "Bytes unchanged since the previous pass with no duplicate yet (unstable tree, KSM's pages_unshared)")
        case .pagesVolatile: Family("samepage_volatile_bytes", "Tracked bytes in neither tree: changing, new or waiting (KSM's pages_volatile)")
        case .zeroPages: Family("samepage_zero_page_bytes", "Bytes of pages found all zero on two visits in a row: reclaim's candidates")
        case .fullScans: Family("samepage_full_scans_total", "Completed passes over the guests' pages (KSM's full_scans)")
        case .pagesScanned: Family("samepage_scanned_bytes_total", "Bytes of guest pages read and classified (KSM's pages_scanned)")
        case .pagesSkipped: Family("samepage_skipped_bytes_total", "Bytes of guest pages passed over by smart scan")
        case .mergesRefused: Family("samepage_merges_refused_total", "Merges refused by max_kernel_pages or a guest's max_pages")
        }
    }

    /// Whether the value is a number of pages (written in bytes), not of events.
    static func inPages(_ key: Counters.CodingKeys) -> Bool {
        switch key {
        case .fullScans, .mergesRefused: false
        default: true
        }
    }
}

extension Counters.CodingKeys {
    /// Whether the counter only grows (a Prometheus counter) rather than telling how many
    /// pages are in some state now (a gauge).
    var isCumulative: Bool {
        switch self {
        case .fullScans, .pagesScanned, .pagesSkipped, .mergesRefused: true
        case .pagesShared, .pagesSharing, .pagesUnshared, .pagesVolatile, .zeroPages: false
        }
    }
}

/// Every family's name and HELP, in one place.
enum Families {
    static var reasons: String { ReclaimDeferral.Reason.allCases.map(\.rawValue).joined(separator: ", ") }

    // Reclaim: the global ones count guests gone too.
    static let punched = Family("samepage_reclaim_punched_bytes_total", "Bytes of zero pages punched out of guest RAM backends (the backend may free less: samepage_reclaimed_bytes_total)")
    static let reclaimed = Family("samepage_reclaimed_bytes_total", "Bytes the backends gave back, measured from their allocated blocks")
    static let pauses = Family("samepage_reclaim_pauses_total", "Guest pauses made for reclaim")
    static let pauseOverruns = Family("samepage_reclaim_pause_overruns_total", "Pauses whose calls (suspend call to resume returned) took longer than max_pause_ms; the guest may have seen less")
    static let guestSeenOverruns = Family("samepage_reclaim_guest_seen_overruns_total", "Pauses the guest saw (QEMU STOP to RESUME) longer than the policy's max_pause_ms")
    static let refaulted = Family("samepage_reclaim_refaulted_bytes_total", "Bytes of reclaimed pages the guest touched again")
    static let pending = Family("samepage_reclaim_pending_bytes", "Bytes of confirmed zero pages waiting for a pause")
    static let held = Family("samepage_reclaim_held_bytes", "Bytes reclaimed and still holes: memory the host has back now")
    static let stoppedEarly = Family("samepage_reclaim_pauses_stopped_early_total", "Pauses whose punching stopped at the deadline or on an outside state change")
    static var deferrals: Family { Family("samepage_reclaim_deferrals_total", "Times a due reclaim began to wait, by reason (\(reasons))") }
    static var deferredGuests: Family { Family("samepage_reclaim_deferred_guests", "Guests whose due reclaim waits now, by reason (\(reasons))") }
    static let pauseSeconds = Family("samepage_reclaim_pause_seconds", "Length of reclaim pauses from samepaged's calls, suspend call to resume returned")
    static let guestSeenPauseSeconds = Family("samepage_reclaim_guest_seen_pause_seconds", "Length of reclaim pauses as the guest saw them, QEMU STOP to RESUME (known for QMP pauses and libvirt's events)")

    // The savings (`Savings`), in the order `list` and `stats` show them; samepaged's own cost
    // is in the process_* series.
    static let freed = Family("samepage_freed_bytes", "Memory the host has back now from zero-page reclaim, net of refaults: bytes reclaimed less refaulted, at most the pages still holes")
    static let freeable = Family("samepage_freeable_bytes", "Confirmed zero pages waiting for a pause, of guests eligible for reclaim")
    static let kernelMerged = Family("samepage_kernel_merged_bytes", "Guest pages the kernel's KSM merged, from their QEMUs' ksm_stat (ksm_merging_pages + ksm_zero_pages)")
    static let privateRAMOnly = Family("samepage_private_ram_only_sharing_bytes", "What sharing would save on shared-memory guests, which only private RAM could realise (attributed evenly between the guests sharing)")
    static let guestAttributedSharing = Family("samepage_guest_sharing_attributed_bytes", "What sharing would save on the guest's pages, each stable node's saving split evenly by page between the guests sharing it")

    // The daemon.
    static let buildInfo = Family("samepage_build_info", "samepaged's version; always 1")
    static let tracking = Family("samepage_tracking_bytes", "Memory the engine holds to track guest pages (rmap items and trees)")
    static let guests = Family("samepage_guests", "Guests known (libvirt's and QEMUs outside libvirt)")
    static let guestsMapped = Family("samepage_guests_mapped", "Guests whose RAM backends are mapped and scanned")
    static let mappedRAM = Family("samepage_mapped_ram_bytes", "RAM of the mapped guests (their mapped regions): what the savings are a share of")
    static let connected = Family("samepage_libvirt_connected", "1 while the libvirt connection is up")
    static let libvirtConfigured = Family("samepage_libvirt_configured", "1 when libvirt is configured (libvirt.uri), 0 when it is off (a Proxmox VE host): samepage_libvirt_connected then means nothing")
    static let runState = Family("samepage_run_state", "The run mode, one series per state (stop, merge, unmerge): 1 for the one in force")
    static let pagesToScan = Family("samepage_pages_to_scan", "Pages visited per batch (pages_to_scan); the scan-time advisor's while it is on")
    static let advisorState = Family("samepage_advisor_state", "Who sets pages_to_scan, one series per advisor_mode (none, scan-time): 1 for the one in force")
    static let advisorTarget = Family("samepage_advisor_target_scan_time_seconds", "The scan-time advisor's target for one full scan (advisor_target_scan_time)")
    static let lastFullScan = Family("samepage_last_full_scan_seconds", "Wall time of the last full scan, time with nothing to scan left out")
    static let lastFullScanCPU = Family("samepage_last_full_scan_cpu_ratio", "The agent thread's CPU over the last full scan, in cores")
    static let unresumed = Family("samepage_unresumed_pauses", "Pauses of samepaged's (this run's or an earlier one's) whose resume has not succeeded yet")

    // The kernel's own KSM.
    static let kernelGoverned = Family("samepage_kernel_ksm_governed", "1 while samepaged governs the kernel's ksmd ([kernel_ksm] enabled)")
    static let kernelRunState = Family("samepage_kernel_ksm_run_state", "The kernel's /sys/kernel/mm/ksm/run, one series per state (stop, merge, unmerge): 1 for the one in force")
    static let kernelSharing = Family("samepage_kernel_ksm_sharing_bytes", "Bytes the kernel merged for real beyond the first of each KSM page (pages_sharing)")
    static let kernelShared = Family("samepage_kernel_ksm_shared_bytes", "Bytes of KSM pages in use (the kernel's pages_shared)")
    static let kernelZero = Family("samepage_kernel_ksm_zero_page_bytes", "Bytes the kernel merged with the zero page (ksm_zero_pages, use_zero_pages)")
    static let kernelHoldBackFailing = Family("samepage_kernel_ksm_holdback_failing", "1 while samepaged cannot stop ksmd to hold it back from guests outside kernel_ksm.trust_group (governed only): ksmd may merge guests it must not")
    static let kernelHoldBackFailures = Family("samepage_kernel_ksm_holdback_failures_total", "Times stopping ksmd for a hold-back failed since samepaged started (governed only)")
    static let kernelProfit = Family("samepage_kernel_ksm_general_profit_bytes", "The kernel's general_profit: bytes KSM saves, less its own tracking")

    // Per guest only: labelled by uuid alone; the rest of what describes a guest is in its info.
    static let guestInfo = Family("samepage_guest_info", "A guest's description, always 1: name, policy mode, trust group (\"\" for a group of its own), source (libvirt, proxmox, qemu) and Proxmox VMID (\"\" outside Proxmox)")
    static let guestRAM = Family("samepage_guest_ram_bytes", "The guest's RAM: the size of its mapped backend regions (0 while unmapped)")
    static let guestMapped = Family("samepage_guest_mapped", "1 while the guest's RAM backends are mapped and scanned")
    static let guestEligible = Family("samepage_guest_reclaim_eligible", "1 while the guest's zero pages may be reclaimed")
    static let guestResumeFailing = Family("samepage_guest_resume_failing", "1 while a pause of samepaged's could not be ended and its resume is retried")
    static var guestDeferred: Family { Family("samepage_guest_reclaim_deferred", "1 while the guest's due reclaim waits (\(reasons); the reason is in samepage_guest_reclaim_deferrals_total)") }
    static let guestKernelMergeable = Family("samepage_guest_kernel_mergeable", "1 while samepaged lets the kernel merge the guest (its backends' merge property)")
    static let guestKernelMerging = Family("samepage_guest_kernel_merging_bytes", "Bytes of the guest's QEMU merged by the kernel (ksm_stat ksm_merging_pages)")
    static let guestKernelZero = Family("samepage_guest_kernel_zero_page_bytes", "Bytes of the guest's QEMU merged with the zero page by the kernel (ksm_stat ksm_zero_pages)")
    static let guestKernelProfit = Family("samepage_guest_kernel_profit_bytes", "Bytes the kernel saves on the guest's QEMU, less its tracking (ksm_stat ksm_process_profit)")

    // The standard process metrics.
    static let processCPU = Family("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.")
    static let processResident = Family("process_resident_memory_bytes", "Resident memory size in bytes.")
    static let processVirtual = Family("process_virtual_memory_bytes", "Virtual memory size in bytes.")
    static let processOpenFDs = Family("process_open_fds", "Number of open file descriptors.")
    static let processMaxFDs = Family("process_max_fds", "Maximum number of open file descriptors.")
    static let processStart = Family("process_start_time_seconds", "Start time of the process since unix epoch in seconds.")
}
