#compdef nonrootctl

autoload -U is-at-least

_nonrootctl() {
    typeset -A opt_args
    typeset -a _arguments_options
    local ret=1

    if is-at-least 5.2; then
        _arguments_options=(-s -S -C)
    else
        _arguments_options=(-s -C)
    fi

    local context curcontext="$curcontext" state line
    _arguments "${_arguments_options[@]}" : \
'--config=[Main config file; drop-ins are read from nonrootd.d/ beside it \[default\: /etc/nonrootd/nonrootd.toml\]. With it, \`apply\` works in-process instead of asking the daemon; \`status\` reads it only when no daemon answers (the daemon'\''s own config is what it shows)]:FILE:_files' \
'--state-dir=[Where nonrootd records what it granted \[default\: \$STATE_DIRECTORY or /var/lib/nonrootd\]. With it, \`apply\` works in-process, as with --config; \`status\` reads it only when no daemon answers]:DIR:_files' \
'*-v[Log more (-v\: changes, -vv\: debugging)]' \
'*--verbose[Log more (-v\: changes, -vv\: debugging)]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
":: :_nonrootctl_commands" \
"*::: :->nonrootctl" \
&& ret=0
    case $state in
    (nonrootctl)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:nonrootctl-command-$line[1]:"
        case $line[1] in
            (status)
_arguments "${_arguments_options[@]}" : \
'--timeout=[Give up waiting for the daemon after this long]:DURATION:_default' \
'--config=[Main config file; drop-ins are read from nonrootd.d/ beside it \[default\: /etc/nonrootd/nonrootd.toml\]. With it, \`apply\` works in-process instead of asking the daemon; \`status\` reads it only when no daemon answers (the daemon'\''s own config is what it shows)]:FILE:_files' \
'--state-dir=[Where nonrootd records what it granted \[default\: \$STATE_DIRECTORY or /var/lib/nonrootd\]. With it, \`apply\` works in-process, as with --config; \`status\` reads it only when no daemon answers]:DIR:_files' \
'--json[Print the status as JSON\: one document with "running" (true, false, or null when that is unknown) in every case, and "error" when no status came back]' \
'*-v[Log more (-v\: changes, -vv\: debugging)]' \
'*--verbose[Log more (-v\: changes, -vv\: debugging)]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(apply)
_arguments "${_arguments_options[@]}" : \
'--only=[Comma-separated duties\: docker, sockets, dmi, subids, volumes \[default\: docker,sockets,dmi,volumes\]]:LIST:_default' \
'--timeout=[Give up waiting for the daemon, or in-process for each lock (apply.lock, shadow'\''s), after this long (e.g. 5s, 500ms), so a hook never hangs Docker'\''s start. Through the daemon it bounds the whole call, volume walks included (a walk that outlasts it goes on in the daemon); in-process, volume walks are not bounded by it]:DURATION:_default' \
'--config=[Main config file; drop-ins are read from nonrootd.d/ beside it \[default\: /etc/nonrootd/nonrootd.toml\]. With it, \`apply\` works in-process instead of asking the daemon; \`status\` reads it only when no daemon answers (the daemon'\''s own config is what it shows)]:FILE:_files' \
'--state-dir=[Where nonrootd records what it granted \[default\: \$STATE_DIRECTORY or /var/lib/nonrootd\]. With it, \`apply\` works in-process, as with --config; \`status\` reads it only when no daemon answers]:DIR:_files' \
'--dry-run[Print what would change and change nothing (in-process, with this config and state directory, also while the daemon runs)]' \
'--json[Print the report as JSON]' \
'--local[Apply in-process without touching the bus (Docker'\''s ExecStartPost= hook\: docker.socket starts before the bus at boot)]' \
'(--local --dry-run)--require-daemon[Only ask the daemon\: exit 3 when none answers instead of applying in-process with this host'\''s config (for scripts that want the daemon'\''s own apply, shown in its status)]' \
'*-v[Log more (-v\: changes, -vv\: debugging)]' \
'*--verbose[Log more (-v\: changes, -vv\: debugging)]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(reload)
_arguments "${_arguments_options[@]}" : \
'--timeout=[Give up waiting for the daemon after this long]:DURATION:_default' \
'--config=[Main config file; drop-ins are read from nonrootd.d/ beside it \[default\: /etc/nonrootd/nonrootd.toml\]. With it, \`apply\` works in-process instead of asking the daemon; \`status\` reads it only when no daemon answers (the daemon'\''s own config is what it shows)]:FILE:_files' \
'--state-dir=[Where nonrootd records what it granted \[default\: \$STATE_DIRECTORY or /var/lib/nonrootd\]. With it, \`apply\` works in-process, as with --config; \`status\` reads it only when no daemon answers]:DIR:_files' \
'*-v[Log more (-v\: changes, -vv\: debugging)]' \
'*--verbose[Log more (-v\: changes, -vv\: debugging)]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(check-config)
_arguments "${_arguments_options[@]}" : \
'*--unit-dir=[Where to look for nonrootd.service, its drop-ins and those of every service (service.d/), lowest priority first \[default\: /lib/systemd/system /usr/lib/systemd/system /usr/local/lib/systemd/system /run/systemd/system /etc/systemd/system /run/systemd/system.control /etc/systemd/system.control\]]:DIR:_files' \
'--config=[Main config file; drop-ins are read from nonrootd.d/ beside it \[default\: /etc/nonrootd/nonrootd.toml\]. With it, \`apply\` works in-process instead of asking the daemon; \`status\` reads it only when no daemon answers (the daemon'\''s own config is what it shows)]:FILE:_files' \
'--state-dir=[Where nonrootd records what it granted \[default\: \$STATE_DIRECTORY or /var/lib/nonrootd\]. With it, \`apply\` works in-process, as with --config; \`status\` reads it only when no daemon answers]:DIR:_files' \
'*-v[Log more (-v\: changes, -vv\: debugging)]' \
'*--verbose[Log more (-v\: changes, -vv\: debugging)]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(revoke)
_arguments "${_arguments_options[@]}" : \
'--timeout=[Give up waiting for another apply after this long]:DURATION:_default' \
'--config=[Main config file; drop-ins are read from nonrootd.d/ beside it \[default\: /etc/nonrootd/nonrootd.toml\]. With it, \`apply\` works in-process instead of asking the daemon; \`status\` reads it only when no daemon answers (the daemon'\''s own config is what it shows)]:FILE:_files' \
'--state-dir=[Where nonrootd records what it granted \[default\: \$STATE_DIRECTORY or /var/lib/nonrootd\]. With it, \`apply\` works in-process, as with --config; \`status\` reads it only when no daemon answers]:DIR:_files' \
'--json[Print the report as JSON]' \
'*-v[Log more (-v\: changes, -vv\: debugging)]' \
'*--verbose[Log more (-v\: changes, -vv\: debugging)]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(subids)
_arguments "${_arguments_options[@]}" : \
'--config=[Main config file; drop-ins are read from nonrootd.d/ beside it \[default\: /etc/nonrootd/nonrootd.toml\]. With it, \`apply\` works in-process instead of asking the daemon; \`status\` reads it only when no daemon answers (the daemon'\''s own config is what it shows)]:FILE:_files' \
'--state-dir=[Where nonrootd records what it granted \[default\: \$STATE_DIRECTORY or /var/lib/nonrootd\]. With it, \`apply\` works in-process, as with --config; \`status\` reads it only when no daemon answers]:DIR:_files' \
'*-v[Log more (-v\: changes, -vv\: debugging)]' \
'*--verbose[Log more (-v\: changes, -vv\: debugging)]' \
'-h[Print help]' \
'--help[Print help]' \
":: :_nonrootctl__subcmd__subids_commands" \
"*::: :->subids" \
&& ret=0

    case $state in
    (subids)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:nonrootctl-subids-command-$line[1]:"
        case $line[1] in
            (allocate)
_arguments "${_arguments_options[@]}" : \
'--count=[Ids wanted (default\: the tenant'\''s count in the config, else \[subids\] count)]:COUNT:_default' \
'--config=[Main config file; drop-ins are read from nonrootd.d/ beside it \[default\: /etc/nonrootd/nonrootd.toml\]. With it, \`apply\` works in-process instead of asking the daemon; \`status\` reads it only when no daemon answers (the daemon'\''s own config is what it shows)]:FILE:_files' \
'--state-dir=[Where nonrootd records what it granted \[default\: \$STATE_DIRECTORY or /var/lib/nonrootd\]. With it, \`apply\` works in-process, as with --config; \`status\` reads it only when no daemon answers]:DIR:_files' \
'--grow[Add a second range when NAME owns fewer ids than asked]' \
'*-v[Log more (-v\: changes, -vv\: debugging)]' \
'*--verbose[Log more (-v\: changes, -vv\: debugging)]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
'*::names:_default' \
&& ret=0
;;
(release)
_arguments "${_arguments_options[@]}" : \
'--config=[Main config file; drop-ins are read from nonrootd.d/ beside it \[default\: /etc/nonrootd/nonrootd.toml\]. With it, \`apply\` works in-process instead of asking the daemon; \`status\` reads it only when no daemon answers (the daemon'\''s own config is what it shows)]:FILE:_files' \
'--state-dir=[Where nonrootd records what it granted \[default\: \$STATE_DIRECTORY or /var/lib/nonrootd\]. With it, \`apply\` works in-process, as with --config; \`status\` reads it only when no daemon answers]:DIR:_files' \
'*-v[Log more (-v\: changes, -vv\: debugging)]' \
'*--verbose[Log more (-v\: changes, -vv\: debugging)]' \
'-h[Print help]' \
'--help[Print help]' \
':name:_default' \
&& ret=0
;;
(list)
_arguments "${_arguments_options[@]}" : \
'--config=[Main config file; drop-ins are read from nonrootd.d/ beside it \[default\: /etc/nonrootd/nonrootd.toml\]. With it, \`apply\` works in-process instead of asking the daemon; \`status\` reads it only when no daemon answers (the daemon'\''s own config is what it shows)]:FILE:_files' \
'--state-dir=[Where nonrootd records what it granted \[default\: \$STATE_DIRECTORY or /var/lib/nonrootd\]. With it, \`apply\` works in-process, as with --config; \`status\` reads it only when no daemon answers]:DIR:_files' \
'--json[Print the ranges as JSON]' \
'*-v[Log more (-v\: changes, -vv\: debugging)]' \
'*--verbose[Log more (-v\: changes, -vv\: debugging)]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(check)
_arguments "${_arguments_options[@]}" : \
'--config=[Main config file; drop-ins are read from nonrootd.d/ beside it \[default\: /etc/nonrootd/nonrootd.toml\]. With it, \`apply\` works in-process instead of asking the daemon; \`status\` reads it only when no daemon answers (the daemon'\''s own config is what it shows)]:FILE:_files' \
'--state-dir=[Where nonrootd records what it granted \[default\: \$STATE_DIRECTORY or /var/lib/nonrootd\]. With it, \`apply\` works in-process, as with --config; \`status\` reads it only when no daemon answers]:DIR:_files' \
'*-v[Log more (-v\: changes, -vv\: debugging)]' \
'*--verbose[Log more (-v\: changes, -vv\: debugging)]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_nonrootctl__subcmd__subids__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:nonrootctl-subids-help-command-$line[1]:"
        case $line[1] in
            (allocate)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(release)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(list)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(check)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(volumes)
_arguments "${_arguments_options[@]}" : \
'--config=[Main config file; drop-ins are read from nonrootd.d/ beside it \[default\: /etc/nonrootd/nonrootd.toml\]. With it, \`apply\` works in-process instead of asking the daemon; \`status\` reads it only when no daemon answers (the daemon'\''s own config is what it shows)]:FILE:_files' \
'--state-dir=[Where nonrootd records what it granted \[default\: \$STATE_DIRECTORY or /var/lib/nonrootd\]. With it, \`apply\` works in-process, as with --config; \`status\` reads it only when no daemon answers]:DIR:_files' \
'*-v[Log more (-v\: changes, -vv\: debugging)]' \
'*--verbose[Log more (-v\: changes, -vv\: debugging)]' \
'-h[Print help]' \
'--help[Print help]' \
":: :_nonrootctl__subcmd__volumes_commands" \
"*::: :->volumes" \
&& ret=0

    case $state in
    (volumes)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:nonrootctl-volumes-command-$line[1]:"
        case $line[1] in
            (check)
_arguments "${_arguments_options[@]}" : \
'--config=[Main config file; drop-ins are read from nonrootd.d/ beside it \[default\: /etc/nonrootd/nonrootd.toml\]. With it, \`apply\` works in-process instead of asking the daemon; \`status\` reads it only when no daemon answers (the daemon'\''s own config is what it shows)]:FILE:_files' \
'--state-dir=[Where nonrootd records what it granted \[default\: \$STATE_DIRECTORY or /var/lib/nonrootd\]. With it, \`apply\` works in-process, as with --config; \`status\` reads it only when no daemon answers]:DIR:_files' \
'*-v[Log more (-v\: changes, -vv\: debugging)]' \
'*--verbose[Log more (-v\: changes, -vv\: debugging)]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_nonrootctl__subcmd__volumes__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:nonrootctl-volumes-help-command-$line[1]:"
        case $line[1] in
            (check)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_nonrootctl__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:nonrootctl-help-command-$line[1]:"
        case $line[1] in
            (status)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(apply)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(reload)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(check-config)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(revoke)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(subids)
_arguments "${_arguments_options[@]}" : \
":: :_nonrootctl__subcmd__help__subcmd__subids_commands" \
"*::: :->subids" \
&& ret=0

    case $state in
    (subids)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:nonrootctl-help-subids-command-$line[1]:"
        case $line[1] in
            (allocate)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(release)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(list)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(check)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(volumes)
_arguments "${_arguments_options[@]}" : \
":: :_nonrootctl__subcmd__help__subcmd__volumes_commands" \
"*::: :->volumes" \
&& ret=0

    case $state in
    (volumes)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:nonrootctl-help-volumes-command-$line[1]:"
        case $line[1] in
            (check)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
}

(( $+functions[_nonrootctl_commands] )) ||
_nonrootctl_commands() {
    local commands; commands=(
'status:Show the daemon'\''s state per duty and path (exit 0 all correct, 1 something refused or failed, 3 daemon not running or no bus)' \
'apply:Apply the configured duties now and report per path\: through the daemon when it runs, in-process otherwise' \
'reload:Make the daemon re-read its config; a broken config is refused and the old one kept' \
'check-config:Validate the main file and its drop-ins; exit 1 naming file, line and key of every problem, then (once there are none) every unknown user or group, then (by file, line and key) every configured path the installed nonrootd.service with its drop-ins may not write, with the drop-in that allows it; such volumes are only noted' \
'revoke:Remove every ACL entry nonrootd recorded as granted (the package runs this on removal)' \
'subids:Subordinate uid/gid ranges per tenant in /etc/subuid and /etc/subgid' \
'volumes:Ownership of the configured \[\[volume\]\] trees (no state\: --state-dir is not used)' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'nonrootctl commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__apply_commands] )) ||
_nonrootctl__subcmd__apply_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl apply commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__check-config_commands] )) ||
_nonrootctl__subcmd__check-config_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl check-config commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__help_commands] )) ||
_nonrootctl__subcmd__help_commands() {
    local commands; commands=(
'status:Show the daemon'\''s state per duty and path (exit 0 all correct, 1 something refused or failed, 3 daemon not running or no bus)' \
'apply:Apply the configured duties now and report per path\: through the daemon when it runs, in-process otherwise' \
'reload:Make the daemon re-read its config; a broken config is refused and the old one kept' \
'check-config:Validate the main file and its drop-ins; exit 1 naming file, line and key of every problem, then (once there are none) every unknown user or group, then (by file, line and key) every configured path the installed nonrootd.service with its drop-ins may not write, with the drop-in that allows it; such volumes are only noted' \
'revoke:Remove every ACL entry nonrootd recorded as granted (the package runs this on removal)' \
'subids:Subordinate uid/gid ranges per tenant in /etc/subuid and /etc/subgid' \
'volumes:Ownership of the configured \[\[volume\]\] trees (no state\: --state-dir is not used)' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'nonrootctl help commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__help__subcmd__apply_commands] )) ||
_nonrootctl__subcmd__help__subcmd__apply_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl help apply commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__help__subcmd__check-config_commands] )) ||
_nonrootctl__subcmd__help__subcmd__check-config_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl help check-config commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__help__subcmd__help_commands] )) ||
_nonrootctl__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl help help commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__help__subcmd__reload_commands] )) ||
_nonrootctl__subcmd__help__subcmd__reload_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl help reload commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__help__subcmd__revoke_commands] )) ||
_nonrootctl__subcmd__help__subcmd__revoke_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl help revoke commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__help__subcmd__status_commands] )) ||
_nonrootctl__subcmd__help__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl help status commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__help__subcmd__subids_commands] )) ||
_nonrootctl__subcmd__help__subcmd__subids_commands() {
    local commands; commands=(
'allocate:Give each NAME (a user name or numeric uid) a range in both files, all in one write (or none when one is refused); prints NAME START COUNT' \
'release:Remove NAME'\''s lines (by name and by uid) from both files and quarantine the ranges (the ids a user namespace can map, up to 4294967294); run it before userdel, whose removed ranges are free at once' \
'list:Every owner, start, count, file, line, and whether nonrootd manages it; then the released ranges still in quarantine, and until when' \
'check:Validate both files; exit 1 when anything is wrong' \
    )
    _describe -t commands 'nonrootctl help subids commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__help__subcmd__subids__subcmd__allocate_commands] )) ||
_nonrootctl__subcmd__help__subcmd__subids__subcmd__allocate_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl help subids allocate commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__help__subcmd__subids__subcmd__check_commands] )) ||
_nonrootctl__subcmd__help__subcmd__subids__subcmd__check_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl help subids check commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__help__subcmd__subids__subcmd__list_commands] )) ||
_nonrootctl__subcmd__help__subcmd__subids__subcmd__list_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl help subids list commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__help__subcmd__subids__subcmd__release_commands] )) ||
_nonrootctl__subcmd__help__subcmd__subids__subcmd__release_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl help subids release commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__help__subcmd__volumes_commands] )) ||
_nonrootctl__subcmd__help__subcmd__volumes_commands() {
    local commands; commands=(
'check:Walk every volume without changing it; count what is not owned as wanted or could not be judged (exit 1 then)' \
    )
    _describe -t commands 'nonrootctl help volumes commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__help__subcmd__volumes__subcmd__check_commands] )) ||
_nonrootctl__subcmd__help__subcmd__volumes__subcmd__check_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl help volumes check commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__reload_commands] )) ||
_nonrootctl__subcmd__reload_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl reload commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__revoke_commands] )) ||
_nonrootctl__subcmd__revoke_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl revoke commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__status_commands] )) ||
_nonrootctl__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl status commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__subids_commands] )) ||
_nonrootctl__subcmd__subids_commands() {
    local commands; commands=(
'allocate:Give each NAME (a user name or numeric uid) a range in both files, all in one write (or none when one is refused); prints NAME START COUNT' \
'release:Remove NAME'\''s lines (by name and by uid) from both files and quarantine the ranges (the ids a user namespace can map, up to 4294967294); run it before userdel, whose removed ranges are free at once' \
'list:Every owner, start, count, file, line, and whether nonrootd manages it; then the released ranges still in quarantine, and until when' \
'check:Validate both files; exit 1 when anything is wrong' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'nonrootctl subids commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__subids__subcmd__allocate_commands] )) ||
_nonrootctl__subcmd__subids__subcmd__allocate_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl subids allocate commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__subids__subcmd__check_commands] )) ||
_nonrootctl__subcmd__subids__subcmd__check_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl subids check commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__subids__subcmd__help_commands] )) ||
_nonrootctl__subcmd__subids__subcmd__help_commands() {
    local commands; commands=(
'allocate:Give each NAME (a user name or numeric uid) a range in both files, all in one write (or none when one is refused); prints NAME START COUNT' \
'release:Remove NAME'\''s lines (by name and by uid) from both files and quarantine the ranges (the ids a user namespace can map, up to 4294967294); run it before userdel, whose removed ranges are free at once' \
'list:Every owner, start, count, file, line, and whether nonrootd manages it; then the released ranges still in quarantine, and until when' \
'check:Validate both files; exit 1 when anything is wrong' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'nonrootctl subids help commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__subids__subcmd__help__subcmd__allocate_commands] )) ||
_nonrootctl__subcmd__subids__subcmd__help__subcmd__allocate_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl subids help allocate commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__subids__subcmd__help__subcmd__check_commands] )) ||
_nonrootctl__subcmd__subids__subcmd__help__subcmd__check_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl subids help check commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__subids__subcmd__help__subcmd__help_commands] )) ||
_nonrootctl__subcmd__subids__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl subids help help commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__subids__subcmd__help__subcmd__list_commands] )) ||
_nonrootctl__subcmd__subids__subcmd__help__subcmd__list_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl subids help list commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__subids__subcmd__help__subcmd__release_commands] )) ||
_nonrootctl__subcmd__subids__subcmd__help__subcmd__release_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl subids help release commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__subids__subcmd__list_commands] )) ||
_nonrootctl__subcmd__subids__subcmd__list_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl subids list commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__subids__subcmd__release_commands] )) ||
_nonrootctl__subcmd__subids__subcmd__release_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl subids release commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__volumes_commands] )) ||
_nonrootctl__subcmd__volumes_commands() {
    local commands; commands=(
'check:Walk every volume without changing it; count what is not owned as wanted or could not be judged (exit 1 then)' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'nonrootctl volumes commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__volumes__subcmd__check_commands] )) ||
_nonrootctl__subcmd__volumes__subcmd__check_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl volumes check commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__volumes__subcmd__help_commands] )) ||
_nonrootctl__subcmd__volumes__subcmd__help_commands() {
    local commands; commands=(
'check:Walk every volume without changing it; count what is not owned as wanted or could not be judged (exit 1 then)' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'nonrootctl volumes help commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__volumes__subcmd__help__subcmd__check_commands] )) ||
_nonrootctl__subcmd__volumes__subcmd__help__subcmd__check_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl volumes help check commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__volumes__subcmd__help__subcmd__help_commands] )) ||
_nonrootctl__subcmd__volumes__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl volumes help help commands' commands "$@"
}

if [ "$funcstack[1]" = "_nonrootctl" ]; then
    _nonrootctl "$@"
else
    compdef _nonrootctl nonrootctl
fi
