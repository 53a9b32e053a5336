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

complete -c nonrootctl -n "__fish_nonrootctl_needs_command" -l config -d 'Main config file; drop-ins are read from nonrootd.d/ beside it [default: /etc/nonrootd/nonrootd.toml]. With it, `apply` works in-process instead of asking the daemon; `status` reads it only when no daemon answers (the daemon\'s own config is what it shows)' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_needs_command" -l state-dir -d 'Where nonrootd records what it granted [default: $STATE_DIRECTORY or /var/lib/nonrootd]. With it, `apply` works in-process, as with --config; `status` reads it only when no daemon answers' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_needs_command" -s v -l verbose -d 'Log more (-v: changes, -vv: debugging)'
complete -c nonrootctl -n "__fish_nonrootctl_needs_command" -s h -l help -d 'Print help'
complete -c nonrootctl -n "__fish_nonrootctl_needs_command" -s V -l version -d 'Print version'
complete -c nonrootctl -n "__fish_nonrootctl_needs_command" -f -a "status" -d 'Show the daemon\'s state per duty and path (exit 0 all correct, 1 something refused or failed, 3 daemon not running or no bus)'
complete -c nonrootctl -n "__fish_nonrootctl_needs_command" -f -a "apply" -d 'Apply the configured duties now and report per path: through the daemon when it runs, in-process otherwise'
complete -c nonrootctl -n "__fish_nonrootctl_needs_command" -f -a "reload" -d 'Make the daemon re-read its config; a broken config is refused and the old one kept'
complete -c nonrootctl -n "__fish_nonrootctl_needs_command" -f -a "check-config" -d 'Validate the main file and its drop-ins; exit 1 naming file, line and key of every problem, then (once there are none) every unknown user or group, then (by file, line and key) every configured path the installed nonrootd.service with its drop-ins may not write, with the drop-in that allows it; such volumes are only noted'
complete -c nonrootctl -n "__fish_nonrootctl_needs_command" -f -a "revoke" -d 'Remove every ACL entry nonrootd recorded as granted (the package runs this on removal)'
complete -c nonrootctl -n "__fish_nonrootctl_needs_command" -f -a "subids" -d 'Subordinate uid/gid ranges per tenant in /etc/subuid and /etc/subgid'
complete -c nonrootctl -n "__fish_nonrootctl_needs_command" -f -a "volumes" -d 'Ownership of the configured [[volume]] trees (no state: --state-dir is not used)'
complete -c nonrootctl -n "__fish_nonrootctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand status" -l timeout -d 'Give up waiting for the daemon after this long' -r
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand status" -l config -d 'Main config file; drop-ins are read from nonrootd.d/ beside it [default: /etc/nonrootd/nonrootd.toml]. With it, `apply` works in-process instead of asking the daemon; `status` reads it only when no daemon answers (the daemon\'s own config is what it shows)' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand status" -l state-dir -d 'Where nonrootd records what it granted [default: $STATE_DIRECTORY or /var/lib/nonrootd]. With it, `apply` works in-process, as with --config; `status` reads it only when no daemon answers' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand status" -l json -d 'Print the status as JSON: one document with "running" (true, false, or null when that is unknown) in every case, and "error" when no status came back'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand status" -s v -l verbose -d 'Log more (-v: changes, -vv: debugging)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand status" -s h -l help -d 'Print help'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand apply" -l only -d 'Comma-separated duties: docker, sockets, dmi, subids, volumes [default: docker,sockets,dmi,volumes]' -r
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand apply" -l timeout -d 'Give up waiting for the daemon, or in-process for each lock (apply.lock, shadow\'s), after this long (e.g. 5s, 500ms), so a hook never hangs Docker\'s start. Through the daemon it bounds the whole call, volume walks included (a walk that outlasts it goes on in the daemon); in-process, volume walks are not bounded by it' -r
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand apply" -l config -d 'Main config file; drop-ins are read from nonrootd.d/ beside it [default: /etc/nonrootd/nonrootd.toml]. With it, `apply` works in-process instead of asking the daemon; `status` reads it only when no daemon answers (the daemon\'s own config is what it shows)' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand apply" -l state-dir -d 'Where nonrootd records what it granted [default: $STATE_DIRECTORY or /var/lib/nonrootd]. With it, `apply` works in-process, as with --config; `status` reads it only when no daemon answers' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand apply" -l dry-run -d 'Print what would change and change nothing (in-process, with this config and state directory, also while the daemon runs)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand apply" -l json -d 'Print the report as JSON'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand apply" -l local -d 'Apply in-process without touching the bus (Docker\'s ExecStartPost= hook: docker.socket starts before the bus at boot)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand apply" -l require-daemon -d 'Only ask the daemon: exit 3 when none answers instead of applying in-process with this host\'s config (for scripts that want the daemon\'s own apply, shown in its status)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand apply" -s v -l verbose -d 'Log more (-v: changes, -vv: debugging)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand apply" -s h -l help -d 'Print help'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand reload" -l timeout -d 'Give up waiting for the daemon after this long' -r
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand reload" -l config -d 'Main config file; drop-ins are read from nonrootd.d/ beside it [default: /etc/nonrootd/nonrootd.toml]. With it, `apply` works in-process instead of asking the daemon; `status` reads it only when no daemon answers (the daemon\'s own config is what it shows)' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand reload" -l state-dir -d 'Where nonrootd records what it granted [default: $STATE_DIRECTORY or /var/lib/nonrootd]. With it, `apply` works in-process, as with --config; `status` reads it only when no daemon answers' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand reload" -s v -l verbose -d 'Log more (-v: changes, -vv: debugging)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand reload" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand check-config" -l unit-dir -d 'Where to look for nonrootd.service, its drop-ins and those of every service (service.d/), lowest priority first [default: /lib/systemd/system /usr/lib/systemd/system /usr/local/lib/systemd/system /run/systemd/system /etc/systemd/system /run/systemd/system.control /etc/systemd/system.control]' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand check-config" -l config -d 'Main config file; drop-ins are read from nonrootd.d/ beside it [default: /etc/nonrootd/nonrootd.toml]. With it, `apply` works in-process instead of asking the daemon; `status` reads it only when no daemon answers (the daemon\'s own config is what it shows)' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand check-config" -l state-dir -d 'Where nonrootd records what it granted [default: $STATE_DIRECTORY or /var/lib/nonrootd]. With it, `apply` works in-process, as with --config; `status` reads it only when no daemon answers' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand check-config" -s v -l verbose -d 'Log more (-v: changes, -vv: debugging)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand check-config" -s h -l help -d 'Print help'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand revoke" -l timeout -d 'Give up waiting for another apply after this long' -r
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand revoke" -l config -d 'Main config file; drop-ins are read from nonrootd.d/ beside it [default: /etc/nonrootd/nonrootd.toml]. With it, `apply` works in-process instead of asking the daemon; `status` reads it only when no daemon answers (the daemon\'s own config is what it shows)' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand revoke" -l state-dir -d 'Where nonrootd records what it granted [default: $STATE_DIRECTORY or /var/lib/nonrootd]. With it, `apply` works in-process, as with --config; `status` reads it only when no daemon answers' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand revoke" -l json -d 'Print the report as JSON'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand revoke" -s v -l verbose -d 'Log more (-v: changes, -vv: debugging)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand revoke" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and not __fish_seen_subcommand_from allocate release list check help" -l config -d 'Main config file; drop-ins are read from nonrootd.d/ beside it [default: /etc/nonrootd/nonrootd.toml]. With it, `apply` works in-process instead of asking the daemon; `status` reads it only when no daemon answers (the daemon\'s own config is what it shows)' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and not __fish_seen_subcommand_from allocate release list check help" -l state-dir -d 'Where nonrootd records what it granted [default: $STATE_DIRECTORY or /var/lib/nonrootd]. With it, `apply` works in-process, as with --config; `status` reads it only when no daemon answers' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and not __fish_seen_subcommand_from allocate release list check help" -s v -l verbose -d 'Log more (-v: changes, -vv: debugging)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and not __fish_seen_subcommand_from allocate release list check help" -s h -l help -d 'Print help'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and not __fish_seen_subcommand_from allocate release list check help" -f -a "allocate" -d 'Give each NAME (a user name or numeric uid) a range in both files, all in one write (or none when one is refused); prints NAME START COUNT'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and not __fish_seen_subcommand_from allocate release list check help" -f -a "release" -d 'Remove NAME\'s lines (by name and by uid) from both files and quarantine the ranges (the ids a user namespace can map, up to 4294967294); run it before userdel, whose removed ranges are free at once'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and not __fish_seen_subcommand_from allocate release list check help" -f -a "list" -d 'Every owner, start, count, file, line, and whether nonrootd manages it; then the released ranges still in quarantine, and until when'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and not __fish_seen_subcommand_from allocate release list check help" -f -a "check" -d 'Validate both files; exit 1 when anything is wrong'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and not __fish_seen_subcommand_from allocate release list check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and __fish_seen_subcommand_from allocate" -l count -d 'Ids wanted (default: the tenant\'s count in the config, else [subids] count)' -r
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and __fish_seen_subcommand_from allocate" -l config -d 'Main config file; drop-ins are read from nonrootd.d/ beside it [default: /etc/nonrootd/nonrootd.toml]. With it, `apply` works in-process instead of asking the daemon; `status` reads it only when no daemon answers (the daemon\'s own config is what it shows)' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and __fish_seen_subcommand_from allocate" -l state-dir -d 'Where nonrootd records what it granted [default: $STATE_DIRECTORY or /var/lib/nonrootd]. With it, `apply` works in-process, as with --config; `status` reads it only when no daemon answers' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and __fish_seen_subcommand_from allocate" -l grow -d 'Add a second range when NAME owns fewer ids than asked'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and __fish_seen_subcommand_from allocate" -s v -l verbose -d 'Log more (-v: changes, -vv: debugging)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and __fish_seen_subcommand_from allocate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and __fish_seen_subcommand_from release" -l config -d 'Main config file; drop-ins are read from nonrootd.d/ beside it [default: /etc/nonrootd/nonrootd.toml]. With it, `apply` works in-process instead of asking the daemon; `status` reads it only when no daemon answers (the daemon\'s own config is what it shows)' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and __fish_seen_subcommand_from release" -l state-dir -d 'Where nonrootd records what it granted [default: $STATE_DIRECTORY or /var/lib/nonrootd]. With it, `apply` works in-process, as with --config; `status` reads it only when no daemon answers' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and __fish_seen_subcommand_from release" -s v -l verbose -d 'Log more (-v: changes, -vv: debugging)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and __fish_seen_subcommand_from release" -s h -l help -d 'Print help'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and __fish_seen_subcommand_from list" -l config -d 'Main config file; drop-ins are read from nonrootd.d/ beside it [default: /etc/nonrootd/nonrootd.toml]. With it, `apply` works in-process instead of asking the daemon; `status` reads it only when no daemon answers (the daemon\'s own config is what it shows)' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and __fish_seen_subcommand_from list" -l state-dir -d 'Where nonrootd records what it granted [default: $STATE_DIRECTORY or /var/lib/nonrootd]. With it, `apply` works in-process, as with --config; `status` reads it only when no daemon answers' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and __fish_seen_subcommand_from list" -l json -d 'Print the ranges as JSON'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Log more (-v: changes, -vv: debugging)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and __fish_seen_subcommand_from check" -l config -d 'Main config file; drop-ins are read from nonrootd.d/ beside it [default: /etc/nonrootd/nonrootd.toml]. With it, `apply` works in-process instead of asking the daemon; `status` reads it only when no daemon answers (the daemon\'s own config is what it shows)' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and __fish_seen_subcommand_from check" -l state-dir -d 'Where nonrootd records what it granted [default: $STATE_DIRECTORY or /var/lib/nonrootd]. With it, `apply` works in-process, as with --config; `status` reads it only when no daemon answers' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and __fish_seen_subcommand_from check" -s v -l verbose -d 'Log more (-v: changes, -vv: debugging)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and __fish_seen_subcommand_from help" -f -a "allocate" -d 'Give each NAME (a user name or numeric uid) a range in both files, all in one write (or none when one is refused); prints NAME START COUNT'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and __fish_seen_subcommand_from help" -f -a "release" -d 'Remove NAME\'s lines (by name and by uid) from both files and quarantine the ranges (the ids a user namespace can map, up to 4294967294); run it before userdel, whose removed ranges are free at once'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and __fish_seen_subcommand_from help" -f -a "list" -d 'Every owner, start, count, file, line, and whether nonrootd manages it; then the released ranges still in quarantine, and until when'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and __fish_seen_subcommand_from help" -f -a "check" -d 'Validate both files; exit 1 when anything is wrong'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand subids; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand volumes; and not __fish_seen_subcommand_from check help" -l config -d 'Main config file; drop-ins are read from nonrootd.d/ beside it [default: /etc/nonrootd/nonrootd.toml]. With it, `apply` works in-process instead of asking the daemon; `status` reads it only when no daemon answers (the daemon\'s own config is what it shows)' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand volumes; and not __fish_seen_subcommand_from check help" -l state-dir -d 'Where nonrootd records what it granted [default: $STATE_DIRECTORY or /var/lib/nonrootd]. With it, `apply` works in-process, as with --config; `status` reads it only when no daemon answers' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand volumes; and not __fish_seen_subcommand_from check help" -s v -l verbose -d 'Log more (-v: changes, -vv: debugging)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand volumes; and not __fish_seen_subcommand_from check help" -s h -l help -d 'Print help'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand volumes; and not __fish_seen_subcommand_from check help" -f -a "check" -d 'Walk every volume without changing it; count what is not owned as wanted or could not be judged (exit 1 then)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand volumes; and not __fish_seen_subcommand_from check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand volumes; and __fish_seen_subcommand_from check" -l config -d 'Main config file; drop-ins are read from nonrootd.d/ beside it [default: /etc/nonrootd/nonrootd.toml]. With it, `apply` works in-process instead of asking the daemon; `status` reads it only when no daemon answers (the daemon\'s own config is what it shows)' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand volumes; and __fish_seen_subcommand_from check" -l state-dir -d 'Where nonrootd records what it granted [default: $STATE_DIRECTORY or /var/lib/nonrootd]. With it, `apply` works in-process, as with --config; `status` reads it only when no daemon answers' -r -F
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand volumes; and __fish_seen_subcommand_from check" -s v -l verbose -d 'Log more (-v: changes, -vv: debugging)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand volumes; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand volumes; and __fish_seen_subcommand_from help" -f -a "check" -d 'Walk every volume without changing it; count what is not owned as wanted or could not be judged (exit 1 then)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand volumes; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand help; and not __fish_seen_subcommand_from status apply reload check-config revoke subids volumes help" -f -a "status" -d 'Show the daemon\'s state per duty and path (exit 0 all correct, 1 something refused or failed, 3 daemon not running or no bus)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand help; and not __fish_seen_subcommand_from status apply reload check-config revoke subids volumes help" -f -a "apply" -d 'Apply the configured duties now and report per path: through the daemon when it runs, in-process otherwise'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand help; and not __fish_seen_subcommand_from status apply reload check-config revoke subids volumes help" -f -a "reload" -d 'Make the daemon re-read its config; a broken config is refused and the old one kept'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand help; and not __fish_seen_subcommand_from status apply reload check-config revoke subids volumes help" -f -a "check-config" -d 'Validate the main file and its drop-ins; exit 1 naming file, line and key of every problem, then (once there are none) every unknown user or group, then (by file, line and key) every configured path the installed nonrootd.service with its drop-ins may not write, with the drop-in that allows it; such volumes are only noted'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand help; and not __fish_seen_subcommand_from status apply reload check-config revoke subids volumes help" -f -a "revoke" -d 'Remove every ACL entry nonrootd recorded as granted (the package runs this on removal)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand help; and not __fish_seen_subcommand_from status apply reload check-config revoke subids volumes help" -f -a "subids" -d 'Subordinate uid/gid ranges per tenant in /etc/subuid and /etc/subgid'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand help; and not __fish_seen_subcommand_from status apply reload check-config revoke subids volumes help" -f -a "volumes" -d 'Ownership of the configured [[volume]] trees (no state: --state-dir is not used)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand help; and not __fish_seen_subcommand_from status apply reload check-config revoke subids volumes help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand help; and __fish_seen_subcommand_from subids" -f -a "allocate" -d 'Give each NAME (a user name or numeric uid) a range in both files, all in one write (or none when one is refused); prints NAME START COUNT'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand help; and __fish_seen_subcommand_from subids" -f -a "release" -d 'Remove NAME\'s lines (by name and by uid) from both files and quarantine the ranges (the ids a user namespace can map, up to 4294967294); run it before userdel, whose removed ranges are free at once'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand help; and __fish_seen_subcommand_from subids" -f -a "list" -d 'Every owner, start, count, file, line, and whether nonrootd manages it; then the released ranges still in quarantine, and until when'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand help; and __fish_seen_subcommand_from subids" -f -a "check" -d 'Validate both files; exit 1 when anything is wrong'
complete -c nonrootctl -n "__fish_nonrootctl_using_subcommand help; and __fish_seen_subcommand_from volumes" -f -a "check" -d 'Walk every volume without changing it; count what is not owned as wanted or could not be judged (exit 1 then)'
