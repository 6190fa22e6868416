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
        '--socket[samepaged'\''s control socket.]:path:'
        '--config[samepaged'\''s configuration file, read for control.socket when neither --socket nor $SAMEPAGE_SOCKET is given.]:path:'
        '--version[Show samepage'\''s version and exit.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
        '(-): :->command'
        '(-)*:: :->arg'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0
    case "${state}" in
    command)
        local -ar subcommands=(
            'list:List guests: where found, state, policy, RAM and what sharing, zero pages and reclaim come to.'
            'dominfo:Show one guest: backends, facts, policy, counters.'
            'stats:Show what the guests save, the global counters (the kernel'\''s names), run mode, tunables and reclaim.'
            'run:Stop scanning, scan and merge, or unmerge everything (run 0/1/2).'
            'tune:Change scan tunables live; with no option, show them.'
            'policy:Show, validate and reload per-guest policies.'
            'sharing:Matrix of stable nodes (merged contents) with pages in both guests of each pair.'
            'scan:Scan memory image files for mergeable pages and print KSM'\''s counters.'
            'guests:Discover libvirt guests, map their RAM (shared or private), scan it and report.'
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
        '--uuid[Show each guest'\''s UUID (36 more columns).]'
        '--json[Print the daemon'\''s answer as JSON\: an array of guest objects, the kernel'\''s counter names as keys.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_samepage_dominfo() {
    local -i ret=1
    local -ar arg_specs=(
        ':guest:{__samepage_custom_complete ---completion dominfo -- positional@0 "${current_word_index}" "$(__samepage_cursor_index_in_current_word)"}'
        '--json[Print the daemon'\''s answer as JSON\: one guest object, the kernel'\''s counter names as keys.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_samepage_stats() {
    local -i ret=1
    local -ar arg_specs=(
        '--json[Print the daemon'\''s answer as JSON\: one flat object, the kernel'\''s counter and knob names as keys, reclaim nested.]'
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
        '--json[Print JSON\: the tunables in force after the change as the daemon reports them (with --kernel-…\: its kernel_ksm object).]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_samepage_policy() {
    local -i ret=1
    local -ar arg_specs=(
        '(-h --help)'{-h,--help}'[Show help information.]'
        '(-): :->command'
        '(-)*:: :->arg'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0
    case "${state}" in
    command)
        local -ar subcommands=(
            'show:The policy in force for each guest, and its file.'
            'validate:Check policy files, or samepaged'\''s configuration file, without the daemon; prints each problem as FILE:LINE: message.'
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
        ':guest:{__samepage_custom_complete ---completion policy show -- positional@0 "${current_word_index}" "$(__samepage_cursor_index_in_current_word)"}'
        '--json[Print the daemon'\''s answer as JSON\: one object per guest, its policy and the file it comes from.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_samepage_policy_validate() {
    local -i ret=1
    local -ar ___as=('auto' 'policy' 'daemon')
    local -ar arg_specs=(
        '--as[auto (by name and sections), policy (a per-guest policy file) or daemon (samepaged.toml).]:kind:{__samepage_complete "${___as[@]}"}'
        '*:files:_files -g '\''*.toml'\'''
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_samepage_policy_reload() {
    local -i ret=1
    local -ar arg_specs=(
        '--json[Print the daemon'\''s answer as JSON\: the errors of the files it rejected.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_samepage_sharing() {
    local -i ret=1
    local -ar arg_specs=(
        '--json[Print the daemon'\''s answer as JSON\: guests, uuids, and the matrix under stable_nodes (and under pages, its former name).]'
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
        '--json[Print JSON computed here, no daemon\: the global counters under the kernel'\''s names, and files, one object per file.]'
        '*:files:'
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
        '--json[Print JSON computed here, no daemon\: {"stats"\: …, "guests"\: \[…\]}, the objects '\''stats --json'\'' and '\''list --json'\'' print.]'
        '--verbose[Log what the agent does on standard error.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_samepage_ksm() {
    local -i ret=1
    local -ar arg_specs=(
        '--json[Print JSON\: the kernel_ksm object of the daemon'\''s stats answer (as in '\''stats --json'\'').]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_samepage_advise() {
    local -i ret=1
    local -ar arg_specs=(
        ':guest:{__samepage_custom_complete ---completion advise -- positional@0 "${current_word_index}" "$(__samepage_cursor_index_in_current_word)"}'
        '--json[Print the daemon'\''s answer as JSON\: an array of advice objects, one per guest.]'
        '(-h --help)'{-h,--help}'[Show help information.]'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

_samepage_help() {
    local -i ret=1
    local -ar arg_specs=(
        '*:subcommands:'
    )
    _arguments -w -s -S : "${arg_specs[@]}" && ret=0

    return "${ret}"
}

if [[ "${funcstack[1]}" = _samepage ]]; then
    _samepage "${@}"
else
    compdef _samepage samepage
fi
