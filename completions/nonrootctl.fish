# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_nonrootctl_global_optspecs
    string join \n config= state-dir= v/verbose h/help V/version
end

function __fish_nonrootctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_nonrootctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_nonrootctl_using_subcommand
    set -l cmd (__fish_nonrootctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c nonrootctl -n "__fish_nonrootctl_needs_command" -l config -d 'Main config file; drop-ins are read from nonrootd.d/ beside it' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_needs_command" -l state-dir -d 'Where nonrootd records what it granted [default: $STATE_DIRECTORY or /var/lib/nonrootd]' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_needs_command" -s v -l verbose -d 'Log more (-v: changes, -vv: debugging)'
complete -c nonrootctl -n "__fish_nonrootctl_needs_command" -s h -l help -d 'Print help'
complete -c nonrootctl -n "__fish_nonrootctl_needs_command" -s V -l version -d 'Print version'
complete -c nonrootctl -n "__fish_nonrootctl_needs_command" -f -a "apply" -d 'Apply the configured duties now and report per path'
complete -c nonrootctl -n "__fish_nonrootctl_needs_command" -f -a "check-config" -d 'Validate the main file and its drop-ins; exit 1 naming file, line and key of every problem'
complete -c nonrootctl -n "__fish_nonrootctl_needs_command" -f -a "revoke" -d 'Remove every ACL entry nonrootd recorded as granted (the package runs this on purge)'
complete -c nonrootctl -n "__fish_nonrootctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand apply" -l only -d 'Comma-separated duties: docker, sockets, dmi, subids [default: docker,sockets,dmi]' -r
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand apply" -l timeout -d 'Give up after this long (e.g. 5s, 500ms), so a hook never hangs Docker\'s start' -r
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand apply" -l config -d 'Main config file; drop-ins are read from nonrootd.d/ beside it' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand apply" -l state-dir -d 'Where nonrootd records what it granted [default: $STATE_DIRECTORY or /var/lib/nonrootd]' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand apply" -l dry-run -d 'Print what would change and change nothing'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand apply" -l json -d 'Print the report as JSON'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand apply" -s v -l verbose -d 'Log more (-v: changes, -vv: debugging)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand apply" -s h -l help -d 'Print help'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand check-config" -l config -d 'Main config file; drop-ins are read from nonrootd.d/ beside it' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand check-config" -l state-dir -d 'Where nonrootd records what it granted [default: $STATE_DIRECTORY or /var/lib/nonrootd]' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand check-config" -s v -l verbose -d 'Log more (-v: changes, -vv: debugging)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand check-config" -s h -l help -d 'Print help'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand revoke" -l timeout -d 'Give up waiting for another apply after this long' -r
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand revoke" -l config -d 'Main config file; drop-ins are read from nonrootd.d/ beside it' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand revoke" -l state-dir -d 'Where nonrootd records what it granted [default: $STATE_DIRECTORY or /var/lib/nonrootd]' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand revoke" -l json -d 'Print the report as JSON'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand revoke" -s v -l verbose -d 'Log more (-v: changes, -vv: debugging)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand revoke" -s h -l help -d 'Print help'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand help; and not __fish_seen_subcommand_from apply check-config revoke help" -f -a "apply" -d 'Apply the configured duties now and report per path'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand help; and not __fish_seen_subcommand_from apply check-config revoke help" -f -a "check-config" -d 'Validate the main file and its drop-ins; exit 1 naming file, line and key of every problem'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand help; and not __fish_seen_subcommand_from apply check-config revoke help" -f -a "revoke" -d 'Remove every ACL entry nonrootd recorded as granted (the package runs this on purge)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand help; and not __fish_seen_subcommand_from apply check-config revoke help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
