function __samepage_should_offer_completions_for_flags_or_options -a expected_commands
    set -l non_repeating_flags_or_options $argv[2..]
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __samepage_parse_tokens
    test "$commands" = "$expected_commands"; and return $non_repeating_flags_or_options_absent
end

function __samepage_should_offer_completions_for_positional -a expected_commands positional_index_comparison expected_positional_index
    set -l non_repeating_flags_or_options
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __samepage_parse_tokens
    test "$commands" = "$expected_commands" -a \( "$positional_index" "$positional_index_comparison" "$expected_positional_index" \)
end

function __samepage_parse_tokens -S
    set -l unparsed_tokens (__samepage_tokens -pc)
    switch $unparsed_tokens[1]
    case 'samepage'
        __samepage_parse_subcommand 0 'socket=' 'config=' 'version' 'h/help'
        switch $unparsed_tokens[1]
        case 'list'
            __samepage_parse_subcommand 0 'uuid' 'json' 'h/help'
        case 'dominfo'
            __samepage_parse_subcommand 1 'json' 'h/help'
        case 'stats'
            __samepage_parse_subcommand 0 'json' 'h/help'
        case 'run'
            __samepage_parse_subcommand 1 'no-wait' 'h/help'
        case 'tune'
            __samepage_parse_subcommand 0 'pages-to-scan=' 'sleep-millisecs=' 'max-kernel-pages=' 'max-page-sharing=' 'advisor-mode=' 'advisor-target-scan-time=' 'advisor-max-cpu=' 'advisor-min-pages-to-scan=' 'advisor-max-pages-to-scan=' 'kernel-available-threshold-percent=' 'kernel-advisor-mode=' 'kernel-advisor-target-scan-time=' 'kernel-advisor-max-cpu=' 'kernel-pages-to-scan=' 'kernel-sleep-millisecs=' 'kernel-max-page-sharing=' 'kernel-use-zero-pages=' 'kernel-smart-scan=' 'json' 'h/help'
        case 'policy'
            __samepage_parse_subcommand 0 'h/help'
            switch $unparsed_tokens[1]
            case 'show'
                __samepage_parse_subcommand 1 'json' 'h/help'
            case 'validate'
                __samepage_parse_subcommand -r 1 'as=' 'h/help'
            case 'reload'
                __samepage_parse_subcommand 0 'json' 'h/help'
            end
        case 'sharing'
            __samepage_parse_subcommand 0 'json' 'h/help'
        case 'scan'
            __samepage_parse_subcommand -r 1 'passes=' 'pages-to-scan=' 'max-kernel-pages=' 'max-page-sharing=' 'smart-scan' 'json' 'h/help'
        case 'guests'
            __samepage_parse_subcommand 0 'connect=' 'passes=' 'mode=' 'trust-group=' 'timeout=' 'json' 'verbose' 'h/help'
        case 'ksm'
            __samepage_parse_subcommand 0 'json' 'h/help'
        case 'advise'
            __samepage_parse_subcommand 1 'json' 'h/help'
        case 'help'
            __samepage_parse_subcommand -r 1 
        end
    end
end

function __samepage_tokens
    if test (string split -m 1 -f 1 -- . "$FISH_VERSION") -gt 3
        commandline --tokens-raw $argv
    else
        commandline -o $argv
    end
end

function __samepage_parse_subcommand -S -a positional_count
    argparse -s r -- $argv
    set -l option_specs $argv[2..]
    set -l is_repeating_positional $_flag_r
    set -el _flag_r
    set -a commands $unparsed_tokens[1]
    set positional_index 0
    while true
        set -e unparsed_tokens[1]
        argparse -sn "$commands" $option_specs -- $unparsed_tokens 2> /dev/null
        set unparsed_tokens $argv
        set positional_index (math $positional_index + 1)
        for non_repeating_flag_or_option in $non_repeating_flags_or_options
            if set -ql "_flag_$(string replace -a - _ -- $non_repeating_flag_or_option)"
                set non_repeating_flags_or_options_absent 1
                break
            end
        end
        test (count $unparsed_tokens) -eq 0 -o \( -z "$is_repeating_positional" -a "$positional_index" -gt "$positional_count" \) && break
    end
end

function __samepage_complete_directories
    set -l token (commandline -t)
    string match -- '*/' $token
    set -l subdirs $token*/
    printf %s\n $subdirs
end

function __samepage_custom_completion
    set -x SAP_SHELL fish
    set -x SAP_SHELL_VERSION $FISH_VERSION
    set -l tokens (__samepage_tokens -p)
    if test -z "$(__samepage_tokens -t)"
        set -l index (count (__samepage_tokens -pc))
        set tokens $tokens[..$index] \'\' $tokens[(math $index + 1)..]
    end
    command $tokens[1] $argv $tokens
end

complete -c 'samepage' -f
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage" socket' -l 'socket' -d 'samepaged\'s control socket.' -rfka ''
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage" config' -l 'config' -d 'samepaged\'s configuration file, read for control.socket when neither --socket nor $SAMEPAGE_SOCKET is given.' -rfka ''
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage" version' -l 'version' -d 'Show samepage\'s version and exit.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_positional "samepage" -eq 1' -fa 'list' -d 'List guests: where found, state, policy, RAM and what sharing, zero pages and reclaim come to.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_positional "samepage" -eq 1' -fa 'dominfo' -d 'Show one guest: backends, facts, policy, counters.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_positional "samepage" -eq 1' -fa 'stats' -d 'Show what the guests save, the global counters (the kernel\'s names), run mode, tunables and reclaim.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_positional "samepage" -eq 1' -fa 'run' -d 'Stop scanning, scan and merge, or unmerge everything (run 0/1/2).'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_positional "samepage" -eq 1' -fa 'tune' -d 'Change scan tunables live; with no option, show them.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_positional "samepage" -eq 1' -fa 'policy' -d 'Show, validate and reload per-guest policies.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_positional "samepage" -eq 1' -fa 'sharing' -d 'Matrix of stable nodes (merged contents) with pages in both guests of each pair.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_positional "samepage" -eq 1' -fa 'scan' -d 'Scan memory image files for mergeable pages and print KSM\'s counters.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_positional "samepage" -eq 1' -fa 'guests' -d 'Discover libvirt guests, map their RAM (shared or private), scan it and report.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_positional "samepage" -eq 1' -fa 'ksm' -d 'Show the kernel\'s own KSM (ksmd): whether samepaged governs it, why it runs or not, its counters.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_positional "samepage" -eq 1' -fa 'advise' -d 'What each mode (off, report, zero, merge) would free now, and why or why not, per guest.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_positional "samepage" -eq 1' -fa 'help' -d 'Show subcommand help information.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage list" uuid' -l 'uuid' -d 'Show each guest\'s UUID (36 more columns).'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage list" json' -l 'json' -d 'Print the daemon\'s answer as JSON: an array of guest objects, the kernel\'s counter names as keys.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage list" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_positional "samepage dominfo" -eq 1' -fka '(__samepage_custom_completion ---completion dominfo -- positional@0 (count (__samepage_tokens -pc)) (__samepage_tokens -tC))'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage dominfo" json' -l 'json' -d 'Print the daemon\'s answer as JSON: one guest object, the kernel\'s counter names as keys.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage dominfo" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage stats" json' -l 'json' -d 'Print the daemon\'s answer as JSON: one flat object, the kernel\'s counter and knob names as keys, reclaim nested.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage stats" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_positional "samepage run" -eq 1' -fka 'stop merge unmerge'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage run" no-wait' -l 'no-wait' -d 'With unmerge: return at once instead of showing progress until reclaimed memory is allocated again.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage run" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage tune" pages-to-scan' -l 'pages-to-scan' -d 'Pages per batch (only with the advisor off: advisor_mode none).' -rfka ''
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage tune" sleep-millisecs' -l 'sleep-millisecs' -d 'Pause between batches.' -rfka ''
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage tune" max-kernel-pages' -l 'max-kernel-pages' -d 'Cap on stable nodes (0 = unlimited).' -rfka ''
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage tune" max-page-sharing' -l 'max-page-sharing' -d 'Cap on pages per stable node (0 = unlimited, else at least 2).' -rfka ''
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage tune" advisor-mode' -l 'advisor-mode' -d 'Who sets pages_to_scan: none (by hand) or scan-time (the advisor).' -rfka 'none scan-time'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage tune" advisor-target-scan-time' -l 'advisor-target-scan-time' -d 'The advisor\'s target time for one full scan, in seconds.' -rfka ''
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage tune" advisor-max-cpu' -l 'advisor-max-cpu' -d 'The advisor\'s CPU cap, percent of one core (1 to 100).' -rfka ''
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage tune" advisor-min-pages-to-scan' -l 'advisor-min-pages-to-scan' -d 'The pages_to_scan the advisor starts from.' -rfka ''
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage tune" advisor-max-pages-to-scan' -l 'advisor-max-pages-to-scan' -d 'The advisor\'s cap on pages_to_scan.' -rfka ''
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage tune" kernel-available-threshold-percent' -l 'kernel-available-threshold-percent' -d 'ksmd runs while MemAvailable is below this share of MemTotal (1 to 100; 100 always runs).' -rfka ''
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage tune" kernel-advisor-mode' -l 'kernel-advisor-mode' -d 'Who sets ksmd\'s pages_to_scan: none (by hand) or scan-time (the kernel\'s advisor).' -rfka 'none scan-time'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage tune" kernel-advisor-target-scan-time' -l 'kernel-advisor-target-scan-time' -d 'The kernel advisor\'s target time for one full scan, in seconds.' -rfka ''
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage tune" kernel-advisor-max-cpu' -l 'kernel-advisor-max-cpu' -d 'The kernel advisor\'s cap on ksmd\'s CPU, percent (1 to 100).' -rfka ''
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage tune" kernel-pages-to-scan' -l 'kernel-pages-to-scan' -d 'ksmd\'s pages per batch (only with --kernel-advisor-mode none).' -rfka ''
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage tune" kernel-sleep-millisecs' -l 'kernel-sleep-millisecs' -d 'ksmd\'s pause between batches.' -rfka ''
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage tune" kernel-max-page-sharing' -l 'kernel-max-page-sharing' -d 'Cap on pages sharing one KSM page (at least 2; changes only while none is shared).' -rfka ''
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage tune" kernel-use-zero-pages' -l 'kernel-use-zero-pages' -d 'Merge zero pages with the kernel\'s zero page: on or off.' -rfka 'on off'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage tune" kernel-smart-scan' -l 'kernel-smart-scan' -d 'Skip pages that keep failing to merge: on or off.' -rfka 'on off'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage tune" json' -l 'json' -d 'Print JSON: the tunables in force after the change as the daemon reports them (with --kernel-…: its kernel_ksm object).'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage tune" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage policy" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_positional "samepage policy" -eq 1' -fa 'show' -d 'The policy in force for each guest, and its file.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_positional "samepage policy" -eq 1' -fa 'validate' -d 'Check policy files, or samepaged\'s configuration file, without the daemon; prints each problem as FILE:LINE: message.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_positional "samepage policy" -eq 1' -fa 'reload' -d 'Make samepaged re-read the policy directory; a bad file is rejected and its guest keeps its last good policy.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_positional "samepage policy show" -eq 1' -fka '(__samepage_custom_completion ---completion policy show -- positional@0 (count (__samepage_tokens -pc)) (__samepage_tokens -tC))'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage policy show" json' -l 'json' -d 'Print the daemon\'s answer as JSON: one object per guest, its policy and the file it comes from.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage policy show" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage policy validate" as' -l 'as' -d 'auto (by name and sections), policy (a per-guest policy file) or daemon (samepaged.toml).' -rfka 'auto policy daemon'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_positional "samepage policy validate" -ge 1' -fa '(for p in (string match -e -- \'*/\' (commandline -t);or printf \n)*.\'toml\';printf %s\n $p;end;__fish_complete_directories (commandline -t) \'\')'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage policy validate" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage policy reload" json' -l 'json' -d 'Print the daemon\'s answer as JSON: the errors of the files it rejected.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage policy reload" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage sharing" json' -l 'json' -d 'Print the daemon\'s answer as JSON: guests, uuids, and the matrix under stable_nodes (and under pages, its former name).'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage sharing" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage scan" passes' -l 'passes' -d 'Full scans over all files.' -rfka ''
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage scan" pages-to-scan' -l 'pages-to-scan' -d 'Pages per batch (pages_to_scan).' -rfka ''
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage scan" max-kernel-pages' -l 'max-kernel-pages' -d 'Cap on stable nodes, i.e. merged contents tracked (0 = unlimited).' -rfka ''
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage scan" max-page-sharing' -l 'max-page-sharing' -d 'Cap on pages sharing one stable node (0 = unlimited, else at least 2).' -rfka ''
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage scan" smart-scan' -l 'smart-scan' -d 'Skip pages that keep failing to merge (kernel smart_scan).'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage scan" json' -l 'json' -d 'Print JSON computed here, no daemon: the global counters under the kernel\'s names, and files, one object per file.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage scan" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage guests" connect' -l 'connect' -d 'libvirt URI.' -rfka ''
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage guests" passes' -l 'passes' -d 'Full scans before reporting (0: list only).' -rfka ''
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage guests" mode' -l 'mode' -d 'How guests are scanned: report (accounted, the default), zero (zero pages only), merge.' -rfka 'off report zero merge'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage guests" trust-group' -l 'trust-group' -d 'Trust group for all guests; without one, each guest only shares within itself.' -rfka ''
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage guests" timeout' -l 'timeout' -d 'Give up after this many seconds.' -rfka ''
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage guests" json' -l 'json' -d 'Print JSON computed here, no daemon: {"stats": …, "guests": […]}, the objects \'stats --json\' and \'list --json\' print.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage guests" verbose' -l 'verbose' -d 'Log what the agent does on standard error.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage guests" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage ksm" json' -l 'json' -d 'Print JSON: the kernel_ksm object of the daemon\'s stats answer (as in \'stats --json\').'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage ksm" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_positional "samepage advise" -eq 1' -fka '(__samepage_custom_completion ---completion advise -- positional@0 (count (__samepage_tokens -pc)) (__samepage_tokens -tC))'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage advise" json' -l 'json' -d 'Print the daemon\'s answer as JSON: an array of advice objects, one per guest.'
complete -c 'samepage' -n '__samepage_should_offer_completions_for_flags_or_options "samepage advise" h help' -s 'h' -l 'help' -d 'Show help information.'
