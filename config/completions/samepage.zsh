#compdef samepage

__samepage_complete() {
    local -ar non_empty_completions=("${@:#(|:*)}")
    local -ar empty_completions=("${(M)@:#(|:*)}")
    _describe -V '' non_empty_completions -- empty_completions -P $'\'\''
}

__samepage_custom_complete() {
    local -a completions
    completions=("${(@f)"$("${command_name}" "${@}" "${command_line[@]}")"}")
    if [[ "${#completions[@]}" -gt 1 ]]; then
        __samepage_complete "${completions[@]:0:-1}"
    fi
}

__samepage_cursor_index_in_current_word() {
    if [[ -z "${QIPREFIX}${IPREFIX}${PREFIX}" ]]; then
        printf 0
    else
        printf %s "${#${(z)LBUFFER}[-1]}"
    fi
}

_samepage() {
    emulate -RL zsh -G
    setopt extendedglob nullglob numericglobsort
    unsetopt aliases banghist

    local -xr SAP_SHELL=zsh
    local -x SAP_SHELL_VERSION
    SAP_SHELL_VERSION="$(builtin emulate zsh -c 'printf %s "${ZSH_VERSION}"')"
    local -r SAP_SHELL_VERSION

    local context state state_descr line
    local -A opt_args

    local -r command_name="${words[1]}"
    local -ar command_line=("${words[@]}")
    local -ir current_word_index="$((CURRENT - 1))"

    local -i ret=1
    local -ar arg_specs=(
        '--socket[samepaged'\''s control socket.]:socket:'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
        '(-): :->command'
        '(-)*:: :->arg'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0
    case "${state}" in
    command)
        local -ar subcommands=(
            'list:List guests: state, backend, mapped or why not, policy, counters.'
            'dominfo:Show one guest: backends, facts, policy, counters.'
            'stats:Show the global counters (the kernel'\''s names), run mode and tunables.'
            'run:Stop scanning, scan and merge, or unmerge everything (run 0/1/2).'
            'tune:Change scan tunables live; with no option, show them.'
            'policy:Show, validate and reload per-guest policies.'
            'sharing:Matrix of merged contents shared between each pair of guests.'
            'scan:Scan memory image files for mergeable pages and print KSM'\''s counters.'
            'guests:Discover libvirt guests, map their shared-memory RAM, scan it and report.'
            'ksm:Show the kernel'\''s own KSM (ksmd): whether samepaged governs it, why it runs or not, its counters.'
            'advise:What each mode (off, report, zero, merge) would free now, and why or why not, per guest.'
            'help:Show subcommand help information.'
        )
        _describe -V subcommand subcommands && ret=0
        ;;
    arg)
        case "${words[1]}" in
        list|dominfo|stats|run|tune|policy|sharing|scan|guests|ksm|advise|help)
            "_samepage_${words[1]}" && ret=0
            ;;
        esac
        ;;
    esac

    return "${ret}"
}

_samepage_list() {
    local -i ret=1
    local -ar arg_specs=(
        '--json[Print JSON\: the daemon'\''s wire form of the answer (the kernel'\''s counter names as keys).]'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_samepage_dominfo() {
    local -i ret=1
    local -ar arg_specs=(
        ':guest:'
        '--json[Print JSON\: the daemon'\''s wire form of the answer (the kernel'\''s counter names as keys).]'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_samepage_stats() {
    local -i ret=1
    local -ar arg_specs=(
        '--json[Print JSON\: the daemon'\''s wire form of the answer (the kernel'\''s counter names as keys).]'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_samepage_run() {
    local -i ret=1
    local -ar _mode=('stop' 'merge' 'unmerge')
    local -ar arg_specs=(
        ':mode:{__samepage_complete "${_mode[@]}"}'
        '--no-wait[With unmerge\: return at once instead of showing progress until reclaimed memory is allocated again.]'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_samepage_tune() {
    local -i ret=1
    local -ar ___advisor_mode=('none' 'scan-time')
    local -ar ___kernel_advisor_mode=('none' 'scan-time')
    local -ar ___kernel_use_zero_pages=('on' 'off')
    local -ar ___kernel_smart_scan=('on' 'off')
    local -ar arg_specs=(
        '--pages-to-scan[Pages per batch (only with the advisor off\: advisor_mode none).]:pages-to-scan:'
        '--sleep-millisecs[Pause between batches.]:sleep-millisecs:'
        '--max-kernel-pages[Cap on stable nodes (0 = unlimited).]:max-kernel-pages:'
        '--max-page-sharing[Cap on pages per stable node (0 = unlimited, else at least 2).]:max-page-sharing:'
        '--advisor-mode[Who sets pages_to_scan\: none (by hand) or scan-time (the advisor).]:advisor-mode:{__samepage_complete "${___advisor_mode[@]}"}'
        '--advisor-target-scan-time[The advisor'\''s target time for one full scan, in seconds.]:advisor-target-scan-time:'
        '--advisor-max-cpu[The advisor'\''s CPU cap, percent of one core (1 to 100).]:advisor-max-cpu:'
        '--advisor-min-pages-to-scan[The pages_to_scan the advisor starts from.]:advisor-min-pages-to-scan:'
        '--advisor-max-pages-to-scan[The advisor'\''s cap on pages_to_scan.]:advisor-max-pages-to-scan:'
        '--kernel-available-threshold-percent[ksmd runs while MemAvailable is below this share of MemTotal (1 to 100; 100 always runs).]:kernel-available-threshold-percent:'
        '--kernel-advisor-mode[Who sets ksmd'\''s pages_to_scan\: none (by hand) or scan-time (the kernel'\''s advisor).]:kernel-advisor-mode:{__samepage_complete "${___kernel_advisor_mode[@]}"}'
        '--kernel-advisor-target-scan-time[The kernel advisor'\''s target time for one full scan, in seconds.]:kernel-advisor-target-scan-time:'
        '--kernel-advisor-max-cpu[The kernel advisor'\''s cap on ksmd'\''s CPU, percent (1 to 100).]:kernel-advisor-max-cpu:'
        '--kernel-pages-to-scan[ksmd'\''s pages per batch (only with --kernel-advisor-mode none).]:kernel-pages-to-scan:'
        '--kernel-sleep-millisecs[ksmd'\''s pause between batches.]:kernel-sleep-millisecs:'
        '--kernel-max-page-sharing[Cap on pages sharing one KSM page (at least 2; changes only while none is shared).]:kernel-max-page-sharing:'
        '--kernel-use-zero-pages[Merge zero pages with the kernel'\''s zero page\: on or off.]:kernel-use-zero-pages:{__samepage_complete "${___kernel_use_zero_pages[@]}"}'
        '--kernel-smart-scan[Skip pages that keep failing to merge\: on or off.]:kernel-smart-scan:{__samepage_complete "${___kernel_smart_scan[@]}"}'
        '--json[Print JSON\: the daemon'\''s wire form of the answer (the kernel'\''s counter names as keys).]'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_samepage_policy() {
    local -i ret=1
    local -ar arg_specs=(
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
        '(-): :->command'
        '(-)*:: :->arg'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0
    case "${state}" in
    command)
        local -ar subcommands=(
            'show:The policy in force for each guest, and its file.'
            'validate:Check policy files without the daemon; prints each problem as FILE:LINE: message.'
            'reload:Make samepaged re-read the policy directory; a bad file is rejected and its guest keeps its last good policy.'
        )
        _describe -V subcommand subcommands && ret=0
        ;;
    arg)
        case "${words[1]}" in
        show|validate|reload)
            "_samepage_policy_${words[1]}" && ret=0
            ;;
        esac
        ;;
    esac

    return "${ret}"
}

_samepage_policy_show() {
    local -i ret=1
    local -ar arg_specs=(
        ':guest:'
        '--json[Print JSON\: the daemon'\''s wire form of the answer (the kernel'\''s counter names as keys).]'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_samepage_policy_validate() {
    local -i ret=1
    local -ar arg_specs=(
        '*:files:'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_samepage_policy_reload() {
    local -i ret=1
    local -ar arg_specs=(
        '--json[Print JSON\: the daemon'\''s wire form of the answer (the kernel'\''s counter names as keys).]'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_samepage_sharing() {
    local -i ret=1
    local -ar arg_specs=(
        '--json[Print JSON\: the daemon'\''s wire form of the answer (the kernel'\''s counter names as keys).]'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_samepage_scan() {
    local -i ret=1
    local -ar arg_specs=(
        '--passes[Full scans over all files.]:passes:'
        '--pages-to-scan[Pages per batch (pages_to_scan).]:pages-to-scan:'
        '--max-kernel-pages[Cap on stable nodes, i.e. merged contents tracked (0 = unlimited).]:max-kernel-pages:'
        '--max-page-sharing[Cap on pages sharing one stable node (0 = unlimited, else at least 2).]:max-page-sharing:'
        '--smart-scan[Skip pages that keep failing to merge (kernel smart_scan).]'
        '--json[Print JSON\: the daemon'\''s wire form of the answer (the kernel'\''s counter names as keys).]'
        '*:files:'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_samepage_guests() {
    local -i ret=1
    local -ar ___mode=('off' 'report' 'zero' 'merge')
    local -ar arg_specs=(
        '--connect[libvirt URI.]:connect:'
        '--passes[Full scans before reporting (0\: list only).]:passes:'
        '--mode[How guests are scanned\: report (accounted, the default), zero (zero pages only), merge.]:mode:{__samepage_complete "${___mode[@]}"}'
        '--trust-group[Trust group for all guests; without one, each guest only shares within itself.]:trust-group:'
        '--timeout[Give up after this many seconds.]:timeout:'
        '--json[Print JSON\: the daemon'\''s wire form of the answer (the kernel'\''s counter names as keys).]'
        '--verbose[Log what the agent does on standard error.]'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_samepage_ksm() {
    local -i ret=1
    local -ar arg_specs=(
        '--json[Print JSON\: the daemon'\''s wire form of the answer (the kernel'\''s counter names as keys).]'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_samepage_advise() {
    local -i ret=1
    local -ar arg_specs=(
        ':guest:'
        '--json[Print JSON\: the daemon'\''s wire form of the answer (the kernel'\''s counter names as keys).]'
        '--version[Show the version.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_samepage_help() {
    local -i ret=1
    local -ar arg_specs=(
        '*:subcommands:'
        '--version[Show the version.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

if [[ "${funcstack[1]}" = _samepage ]]; then
    _samepage "${@}"
else
    compdef _samepage samepage
fi
