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
'--config=[Main config file; drop-ins are read from nonrootd.d/ beside it]:FILE:_files' \
'--state-dir=[Where nonrootd records what it granted \[default\: \$STATE_DIRECTORY or /var/lib/nonrootd\]]:DIR:_files' \
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
            (apply)
_arguments "${_arguments_options[@]}" : \
'--only=[Comma-separated duties\: docker, sockets, dmi, subids \[default\: docker,sockets,dmi\]]:LIST:_default' \
'--timeout=[Give up after this long (e.g. 5s, 500ms), so a hook never hangs Docker'\''s start]:DURATION:_default' \
'--config=[Main config file; drop-ins are read from nonrootd.d/ beside it]:FILE:_files' \
'--state-dir=[Where nonrootd records what it granted \[default\: \$STATE_DIRECTORY or /var/lib/nonrootd\]]:DIR:_files' \
'--dry-run[Print what would change and change nothing]' \
'--json[Print the report as JSON]' \
'*-v[Log more (-v\: changes, -vv\: debugging)]' \
'*--verbose[Log more (-v\: changes, -vv\: debugging)]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(check-config)
_arguments "${_arguments_options[@]}" : \
'--config=[Main config file; drop-ins are read from nonrootd.d/ beside it]:FILE:_files' \
'--state-dir=[Where nonrootd records what it granted \[default\: \$STATE_DIRECTORY or /var/lib/nonrootd\]]:DIR:_files' \
'*-v[Log more (-v\: changes, -vv\: debugging)]' \
'*--verbose[Log more (-v\: changes, -vv\: debugging)]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(revoke)
_arguments "${_arguments_options[@]}" : \
'--timeout=[Give up waiting for another apply after this long]:DURATION:_default' \
'--config=[Main config file; drop-ins are read from nonrootd.d/ beside it]:FILE:_files' \
'--state-dir=[Where nonrootd records what it granted \[default\: \$STATE_DIRECTORY or /var/lib/nonrootd\]]:DIR:_files' \
'--json[Print the report as JSON]' \
'*-v[Log more (-v\: changes, -vv\: debugging)]' \
'*--verbose[Log more (-v\: changes, -vv\: debugging)]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
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
            (apply)
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
'apply:Apply the configured duties now and report per path' \
'check-config:Validate the main file and its drop-ins; exit 1 naming file, line and key of every problem' \
'revoke:Remove every ACL entry nonrootd recorded as granted (the package runs this on purge)' \
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
'apply:Apply the configured duties now and report per path' \
'check-config:Validate the main file and its drop-ins; exit 1 naming file, line and key of every problem' \
'revoke:Remove every ACL entry nonrootd recorded as granted (the package runs this on purge)' \
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
(( $+functions[_nonrootctl__subcmd__help__subcmd__revoke_commands] )) ||
_nonrootctl__subcmd__help__subcmd__revoke_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl help revoke commands' commands "$@"
}
(( $+functions[_nonrootctl__subcmd__revoke_commands] )) ||
_nonrootctl__subcmd__revoke_commands() {
    local commands; commands=()
    _describe -t commands 'nonrootctl revoke commands' commands "$@"
}

if [ "$funcstack[1]" = "_nonrootctl" ]; then
    _nonrootctl "$@"
else
    compdef _nonrootctl nonrootctl
fi
